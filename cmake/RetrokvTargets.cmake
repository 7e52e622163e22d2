# Helpers that turn a source file (or a folder) into an executable in build/bin.
# Tests, benchmarks, examples and tools are discovered by glob so adding one needs no edit here.

# retrokv_add_program(NAME SOURCES... [LIBS ...])
function(retrokv_add_program name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE retrokv::retrokv retrokv_build_flags ${ARG_LIBS})
  if(TARGET retrokv_engine)
    target_link_libraries(${name} PRIVATE retrokv_engine)
  endif()
endfunction()

# Peers used as baselines (hnswlib, Faiss): linked into benchmarks and the eval harness only,
# never into the library. Optional: a clear message when missing, RETROKV_HAVE_{HNSWLIB,FAISS}.
find_path(RETROKV_HNSWLIB_INCLUDE hnswlib/hnswlib.h)
find_package(faiss CONFIG QUIET)
if(NOT RETROKV_HNSWLIB_INCLUDE)
  message(STATUS "retrokv: hnswlib not found (apt-get install libhnswlib-dev); HNSW baseline off")
endif()
if(NOT faiss_FOUND)
  message(STATUS "retrokv: Faiss not found (apt-get install libfaiss-dev); Faiss baseline off")
endif()
function(retrokv_link_peers name)
  if(RETROKV_HNSWLIB_INCLUDE)
    target_include_directories(${name} SYSTEM PRIVATE ${RETROKV_HNSWLIB_INCLUDE})
    target_compile_definitions(${name} PRIVATE RETROKV_HAVE_HNSWLIB=1)
  endif()
  if(faiss_FOUND)
    target_link_libraries(${name} PRIVATE faiss)
    target_compile_definitions(${name} PRIVATE RETROKV_HAVE_FAISS=1)
  endif()
endfunction()
