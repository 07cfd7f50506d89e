/* The Win32 side of the Criterion stand-in's runner (runner.h): each test
 * runs in a fresh copy of this executable inside a job object, so that a
 * timeout kills it and whatever processes it leaves behind go with it.
 * Raw Win32 only: the library under test is not used here. */
#include <windows.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "runner.h"

static DWORD test_thread;

static LONG WINAPI on_crash(EXCEPTION_POINTERS *ep)
{
    fprintf(stderr, "[CRASH] exception 0x%08lx at %p\n",
            (unsigned long)ep->ExceptionRecord->ExceptionCode,
            ep->ExceptionRecord->ExceptionAddress);
    fflush(stderr);
    /* End with the exception code, without a debugger (winedbg under Wine). */
    return EXCEPTION_EXECUTE_HANDLER;
}

void cr__os_enter_test(void)
{
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOGPFAULTERRORBOX);
    SetUnhandledExceptionFilter(on_crash);
    test_thread = GetCurrentThreadId();
}

bool cr__os_on_test_thread(void)
{
    return GetCurrentThreadId() == test_thread;
}

/* Starts the child with our standard handles, inherited through a handle
 * list so that nothing else leaks into it, in a new kill-on-close job. */
static bool start_child(const char *name, HANDLE *job, PROCESS_INFORMATION *pi)
{
    static wchar_t exe[32768];
    if (!exe[0] && !GetModuleFileNameW(NULL, exe, sizeof exe / sizeof *exe)) return false;
    wchar_t wname[512];
    if (!MultiByteToWideChar(CP_UTF8, 0, name, -1, wname, 512)) return false;
    size_t cap = wcslen(exe) + wcslen(wname) + 32;
    wchar_t *cmd = malloc(cap * sizeof *cmd);
    if (!cmd) return false;
    swprintf(cmd, cap, L"\"%ls\" " CR__RUN_FLAG L" %ls", exe, wname);

    STARTUPINFOEXW si;
    memset(&si, 0, sizeof si);
    si.StartupInfo.cb = sizeof si;
    si.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
    HANDLE list[3];
    DWORD nlist = 0;
    const DWORD which[3] = {STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE};
    HANDLE *slot[3] = {&si.StartupInfo.hStdInput, &si.StartupInfo.hStdOutput,
                       &si.StartupInfo.hStdError};
    for (int i = 0; i < 3; i++) {
        HANDLE h = GetStdHandle(which[i]), dup = NULL;
        if (h && h != INVALID_HANDLE_VALUE &&
            DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &dup, 0, TRUE,
                            DUPLICATE_SAME_ACCESS))
            list[nlist++] = dup;
        *slot[i] = dup;
    }
    SIZE_T size = 0;
    InitializeProcThreadAttributeList(NULL, 1, 0, &size);
    si.lpAttributeList = malloc(size);
    bool ok =
        si.lpAttributeList && InitializeProcThreadAttributeList(si.lpAttributeList, 1, 0, &size);
    if (ok && nlist)
        ok = UpdateProcThreadAttribute(si.lpAttributeList, 0, PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
                                       list, nlist * sizeof *list, NULL, NULL);
    *job = ok ? CreateJobObjectW(NULL, NULL) : NULL;
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION li;
    memset(&li, 0, sizeof li);
    li.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    ok = *job && SetInformationJobObject(*job, JobObjectExtendedLimitInformation, &li, sizeof li);
    /* Suspended until it is in the job, so that all it starts is too. */
    /* Wine fails a start now and then with ERROR_INTERNAL_ERROR (the new
     * process died before it ran any of its code): try again. */
    bool started = false;
    for (int attempt = 0; ok && !started && attempt < 5; attempt++) {
        started = CreateProcessW(exe, cmd, NULL, NULL, nlist > 0,
                                 CREATE_SUSPENDED | EXTENDED_STARTUPINFO_PRESENT, NULL, NULL,
                                 &si.StartupInfo, pi);
        if (!started && GetLastError() != ERROR_INTERNAL_ERROR) break;
    }
    ok = started;
    if (ok && !AssignProcessToJobObject(*job, pi->hProcess)) {
        TerminateProcess(pi->hProcess, 1);
        CloseHandle(pi->hProcess);
        CloseHandle(pi->hThread);
        ok = false;
    }
    if (ok) ResumeThread(pi->hThread);
    if (!ok && *job) {
        CloseHandle(*job);
        *job = NULL;
    }
    if (si.lpAttributeList) {
        DeleteProcThreadAttributeList(si.lpAttributeList);
        free(si.lpAttributeList);
    }
    for (DWORD i = 0; i < nlist; i++)
        CloseHandle(list[i]);
    free(cmd);
    return ok;
}

static void run_child(const char *name, double limit, struct cr__outcome *out)
{
    HANDLE job;
    PROCESS_INFORMATION pi;
    if (!start_child(name, &job, &pi)) {
        out->end = CR__NOT_STARTED;
        snprintf(out->detail, sizeof out->detail, "error %lu", (unsigned long)GetLastError());
        return;
    }
    CloseHandle(pi.hThread);
    ULONGLONG start = GetTickCount64();
    DWORD w = WaitForSingleObject(pi.hProcess, (DWORD)(limit * 1000.0));
    out->secs = (double)(GetTickCount64() - start) / 1000.0;
    DWORD code = 0;
    if (w != WAIT_OBJECT_0)
        TerminateProcess(pi.hProcess, 1);
    else
        GetExitCodeProcess(pi.hProcess, &code);
    /* Whatever the test started and left running goes with it. */
    TerminateJobObject(job, 1);
    CloseHandle(job);
    CloseHandle(pi.hProcess);
    out->end = w == WAIT_OBJECT_0 ? CR__EXITED : CR__TIMED_OUT;
    out->code = code;
}

void cr__os_run_children(const char *argv0, size_t n, const char *const names[],
                         const double limits[], unsigned jobs, cr__done_fn *done, void *ctx)
{
    (void)argv0; /* GetModuleFileNameW names this executable */
    (void)jobs;
    for (size_t i = 0; i < n; i++) {
        struct cr__outcome o;
        memset(&o, 0, sizeof o);
        fflush(NULL);
        run_child(names[i], limits[i], &o);
        done(i, &o, NULL, ctx);
    }
}

unsigned cr__os_default_jobs(void)
{
    return 1;
}
