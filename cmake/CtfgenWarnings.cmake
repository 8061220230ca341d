# One place for warning flags, applied to every ctfgen target.
function(ctfgen_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(CTFGEN_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
