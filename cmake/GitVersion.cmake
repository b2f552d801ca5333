# Run at every build (cmake -P): writes the version header with the current git SHA ("-dirty" when
# the working tree has uncommitted changes), touching the file only when the text changes so that
# unchanged builds recompile nothing. Inputs: SRC (repo root), IN (template), OUT (header), VERSION.
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SRC}
  OUTPUT_VARIABLE HG_GIT_SHA OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT HG_GIT_SHA)
  set(HG_GIT_SHA "unknown")
else()
  execute_process(COMMAND git status --porcelain --untracked-files=no WORKING_DIRECTORY ${SRC}
    OUTPUT_VARIABLE dirty OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(dirty)
    set(HG_GIT_SHA "${HG_GIT_SHA}-dirty")
  endif()
endif()
set(PROJECT_VERSION ${VERSION})
configure_file(${IN} ${OUT}.new @ONLY)
file(READ ${OUT}.new new_text)
if(EXISTS ${OUT})
  file(READ ${OUT} old_text)
else()
  set(old_text "")
endif()
if(NOT new_text STREQUAL old_text)
  file(RENAME ${OUT}.new ${OUT})
else()
  file(REMOVE ${OUT}.new)
endif()
