# Installation: headers, both libraries, a CMake package (find_package(mproc)
# gives mproc::mproc and mproc::mproc_static) and a pkg-config file.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS mproc mproc_static EXPORT mprocTargets
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(MPROC_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mproc)
install(EXPORT mprocTargets NAMESPACE mproc:: DESTINATION ${MPROC_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/mprocConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mprocConfig.cmake INSTALL_DESTINATION ${MPROC_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mprocConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mprocConfig.cmake ${PROJECT_BINARY_DIR}/mprocConfigVersion.cmake
  DESTINATION ${MPROC_CMAKE_DIR})

# pkg-config: the static library's system dependencies go in Libs.private.
set(MPROC_PC_PRIVATE "")
foreach(lib ${MPROC_OS_LIBS})
  if(lib STREQUAL "Threads::Threads")
    if(NOT WIN32)
      string(APPEND MPROC_PC_PRIVATE " -pthread")
    endif()
  elseif(lib STREQUAL "OpenSSL::Crypto")
    string(APPEND MPROC_PC_PRIVATE " -lcrypto")
  elseif(lib MATCHES "::")
    continue()
  elseif(lib MATCHES "^/")
    string(APPEND MPROC_PC_PRIVATE " ${lib}")
  else()
    string(APPEND MPROC_PC_PRIVATE " -l${lib}")
  endif()
endforeach()
configure_file(${PROJECT_SOURCE_DIR}/cmake/mproc.pc.in ${PROJECT_BINARY_DIR}/mproc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mproc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
