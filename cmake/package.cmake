# `cmake --install`: the embeddable library, its header, the headers a
# generated profiles/profile_<model>.h includes (so that an app compiles in
# its own profile with -I<prefix>/include/rankkv), and the pkg-config and
# CMake descriptions of both. Nothing else (tools, internal archives) is
# installed.
include(CMakePackageConfigHelpers)

install(TARGETS rankkv ARCHIVE DESTINATION lib)
install(FILES ${CMAKE_SOURCE_DIR}/include/rankkv.h DESTINATION include)
install(FILES ${CMAKE_SOURCE_DIR}/core/profile.h ${CMAKE_SOURCE_DIR}/core/rank_budget.h
              ${CMAKE_SOURCE_DIR}/core/rk_error.h
        DESTINATION include/rankkv)

# A CUDA build's archive holds the CUDA target; its libraries come with
# their directory, also as a run path since it is often not one the loader
# searches.
set(RK_PC_CUDA_LIBS "")
if(RANKKV_HAVE_CUDA)
  set(RK_PC_CUDA_LIBS
      " -L${CUDAToolkit_LIBRARY_DIR} -Wl,-rpath,${CUDAToolkit_LIBRARY_DIR} -lcublasLt -lcudart -lstdc++")
endif()
configure_file(${CMAKE_SOURCE_DIR}/cmake/rankkv.pc.in ${CMAKE_BINARY_DIR}/package/rankkv.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/package/rankkv.pc DESTINATION lib/pkgconfig)

configure_file(${CMAKE_SOURCE_DIR}/cmake/rankkv-config.cmake.in
               ${CMAKE_BINARY_DIR}/package/rankkv-config.cmake @ONLY)
# 0.x: a minor version may break the API.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/package/rankkv-config-version.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/package/rankkv-config.cmake
              ${CMAKE_BINARY_DIR}/package/rankkv-config-version.cmake
        DESTINATION lib/cmake/rankkv)
