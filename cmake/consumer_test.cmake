# ctest: install this build into a scratch prefix, build tests/consumer
# against it (CMake package, and pkg-config natively), and run the results.
# -D BIN=<build dir> SRC=<source dir> WORK=<scratch dir> [TOOLCHAIN=<file>]
# [EMULATOR=<wine>]
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "ok: ${ARGN}\n${out}")
endfunction()

file(REMOVE_RECURSE ${WORK})
run(${CMAKE_COMMAND} --install ${BIN} --prefix ${WORK}/prefix)
set(args -S ${SRC}/tests/consumer -B ${WORK}/build -DCMAKE_PREFIX_PATH=${WORK}/prefix)
if(TOOLCHAIN)
  list(APPEND args -DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN})
endif()
run(${CMAKE_COMMAND} ${args})
run(${CMAKE_COMMAND} --build ${WORK}/build)
foreach(exe consumer_shared consumer_static consumer_cxx)
  file(GLOB found ${WORK}/build/${exe} ${WORK}/build/${exe}.exe)
  run(${EMULATOR} ${found})
endforeach()
if(NOT TOOLCHAIN)
  set(ENV{PKG_CONFIG_PATH} ${WORK}/prefix/lib/pkgconfig)
  execute_process(COMMAND pkg-config --cflags --libs mproc OUTPUT_VARIABLE pc
                  OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config does not find mproc")
  endif()
  separate_arguments(pc UNIX_COMMAND "${pc}")
  run(cc -std=c11 -o ${WORK}/consumer_pc ${SRC}/tests/consumer/main.c ${pc}
      -Wl,-rpath,${WORK}/prefix/lib)
  run(${WORK}/consumer_pc)
endif()
