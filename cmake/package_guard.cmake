# CPACK_PRE_BUILD_SCRIPTS: packages never ship the test-only crash points.
if(CPACK_ABUP_FAULT_INJECTION)
  message(FATAL_ERROR "abup packages must be built with -DABUP_FAULT_INJECTION=OFF "
                      "(this build tree has the crash points compiled in); see tools/package")
endif()
