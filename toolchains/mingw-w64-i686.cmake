# Cross-compiles mproc for 32-bit Windows (i686) with MinGW-w64. Its tests
# need a Wine that runs 32-bit programs (Debian: the wine32 package, i386
# multiarch); wine64 alone cannot, so see docs/portability.md.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86)
set(MINGW_PREFIX i686-w64-mingw32)
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
find_program(MPROC_WINE32 NAMES wine)
if(MPROC_WINE32)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MPROC_WINE32})
endif()
