# Build helpers: one library per src/ folder, warnings, the shared PCH, and MPI test registration.

# hg_library(NAME SOURCES ... DEPS ... [TORCH]): a static library for one src/ folder.
function(hg_library name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src ${PROJECT_BINARY_DIR}/generated)
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    hg_use_torch(${name})
  endif()
endfunction()

# hg_use_torch(TARGET): link LibTorch and reuse the shared precompiled header.
function(hg_use_torch target)
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  if(HG_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM hg_pch)
  endif()
endfunction()

# hg_add_mpi_test(NAME BIN NP [ARGS...]): run a test binary under mpiexec with NP ranks.
# CI runs as root and with more ranks than cores, hence --allow-run-as-root --oversubscribe.
function(hg_add_mpi_test name bin np)
  add_test(NAME ${name}
    COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${np}
            -x OMP_NUM_THREADS=1 -x OMP_WAIT_POLICY=PASSIVE $<TARGET_FILE:${bin}> ${ARGN})
  set_tests_properties(${name} PROPERTIES LABELS mpi PROCESSORS ${np} TIMEOUT 600)
endfunction()
