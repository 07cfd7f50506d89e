# Cross-compiles mproc for 64-bit Windows with MinGW-w64; the tests then
# run under Wine through CMAKE_CROSSCOMPILING_EMULATOR.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(MINGW_PREFIX x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${MINGW_PREFIX}-gcc)
set(CMAKE_CXX_COMPILER ${MINGW_PREFIX}-g++)
set(CMAKE_RC_COMPILER ${MINGW_PREFIX}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# BOTH: packages installed in a prefix of the user's (CMAKE_PREFIX_PATH) are found too.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# Static runtime: the .exe files run under Wine (or on Windows) without
# MinGW's DLLs beside them.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static-libgcc")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc")
find_program(MPROC_WINE NAMES wine64 wine PATHS /usr/lib/wine)
if(MPROC_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MPROC_WINE})
endif()
