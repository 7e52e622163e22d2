# RETROKV_SANITIZE=address|undefined|thread (or a comma list): flags on the project's own
# targets through an interface target, never on CMAKE_CXX_FLAGS.
function(retrokv_apply_sanitizers target)
  if(NOT RETROKV_SANITIZE)
    return()
  endif()
  string(REPLACE "," ";" _sans "${RETROKV_SANITIZE}")
  foreach(_s IN LISTS _sans)
    if(NOT _s MATCHES "^(address|undefined|thread)$")
      message(FATAL_ERROR "RETROKV_SANITIZE: unknown sanitizer '${_s}' (address, undefined, thread)")
    endif()
  endforeach()
  string(REPLACE ";" "," _flag "${_sans}")
  target_compile_options(${target} INTERFACE
    $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=${_flag} -fno-omit-frame-pointer -fno-sanitize-recover=all>)
  target_link_options(${target} INTERFACE -fsanitize=${_flag})
endfunction()
