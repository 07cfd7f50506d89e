# ctest: build tests/consumer against mproc the ways a user's project gets
# it, and run the results: installed into a scratch prefix (CMake package,
# and pkg-config on POSIX), through add_subdirectory of this source tree,
# and through FetchContent of a source archive at a file:// URL (no
# network). -D BIN=<build dir> SRC=<source dir> WORK=<scratch dir>
# [GENERATOR=<name>] [TOOLCHAIN=<file>] [EMULATOR=<wine>]
# [VIAS=<comma-separated ways; default all three>]
cmake_policy(VERSION 3.16)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "ok: ${ARGN}\n${out}")
endfunction()

# Configures, builds and runs the consumer project getting mproc via `via`.
function(consumer via)
  set(dir ${WORK}/build-${via})
  set(args -S ${SRC}/tests/consumer -B ${dir} -DMPROC_CONSUMER_VIA=${via} ${ARGN})
  if(GENERATOR)
    list(APPEND args -G ${GENERATOR})
  endif()
  if(TOOLCHAIN)
    list(APPEND args -DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN})
  endif()
  run(${CMAKE_COMMAND} ${args})
  run(${CMAKE_COMMAND} --build ${dir})
  foreach(exe consumer_shared consumer_static consumer_cxx)
    file(GLOB found ${dir}/${exe} ${dir}/${exe}.exe)
    run(${EMULATOR} ${found})
  endforeach()
endfunction()

if(VIAS)
  string(REPLACE "," ";" VIAS "${VIAS}")
else()
  set(VIAS package subdirectory fetchcontent)
endif()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})

if(package IN_LIST VIAS)
  run(${CMAKE_COMMAND} --install ${BIN} --prefix ${WORK}/prefix)
  consumer(package -DCMAKE_PREFIX_PATH=${WORK}/prefix)
  if(NOT TOOLCHAIN AND NOT CMAKE_HOST_WIN32)
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
endif()

if(subdirectory IN_LIST VIAS)
  consumer(subdirectory -DMPROC_SOURCE_DIR=${SRC})
endif()

if(fetchcontent IN_LIST VIAS)
  # What a release archive holds: enough to build the libraries.
  execute_process(COMMAND ${CMAKE_COMMAND} -E tar czf ${WORK}/mproc-src.tar.gz
                          CMakeLists.txt cmake include src
                  WORKING_DIRECTORY ${SRC} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cannot pack the source tree")
  endif()
  consumer(fetchcontent -DMPROC_URL=file://${WORK}/mproc-src.tar.gz)
endif()
