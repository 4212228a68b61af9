# Install rules and CPack (DEB and RPM; Azure Linux is RPM-based). abup reads /etc/abup and
# /usr/share/abup/keys.d, so the prefix is /usr unless said otherwise and the configuration goes
# to /etc whatever the prefix. Packages need -DABUP_FAULT_INJECTION=OFF: cpack refuses a build
# with the crash points compiled in (tools/package builds and checks both packages).
if(CMAKE_INSTALL_PREFIX_INITIALIZED_TO_DEFAULT)
  set(CMAKE_INSTALL_PREFIX /usr CACHE PATH "Install prefix" FORCE)
endif()
include(GNUInstallDirs)
set(ABUP_CONF_DIR /etc/abup)

set(ABUP_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING "systemd units, under the prefix")
set(units ${CMAKE_CURRENT_SOURCE_DIR}/systemd-units)

install(TARGETS abup abup-image RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${units}/abup.service DESTINATION ${ABUP_SYSTEMD_UNIT_DIR})
install(FILES ${units}/90-abup.preset DESTINATION lib/systemd/system-preset)
install(FILES ${units}/abup-tmpfiles.conf DESTINATION lib/tmpfiles.d RENAME abup.conf)
install(FILES ${units}/abup-sysusers.conf DESTINATION lib/sysusers.d RENAME abup.conf)
install(FILES ${units}/org.abup.Agent1.conf DESTINATION ${CMAKE_INSTALL_DATADIR}/dbus-1/system.d)
install(FILES ${units}/org.abup.Agent1.service
        DESTINATION ${CMAKE_INSTALL_DATADIR}/dbus-1/system-services)
# The image's trusted keys are added by the image build; the directory is the package's.
install(DIRECTORY DESTINATION ${CMAKE_INSTALL_DATADIR}/abup/keys.d)
install(FILES packaging/abup.conf DESTINATION ${ABUP_CONF_DIR})
install(DIRECTORY DESTINATION ${ABUP_CONF_DIR}/keys.d)
install(DIRECTORY DESTINATION ${ABUP_CONF_DIR}/abup.conf.d)
install(FILES docs/abup.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES README.md docs/operations.md docs/design.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(CPACK_PACKAGE_NAME abup)
set(CPACK_PACKAGE_VENDOR "abup")
set(CPACK_PACKAGE_CONTACT "abup maintainers <abup@example.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "A/B image update agent for immutable container hosts")
set(CPACK_PACKAGE_DESCRIPTION
    "abup verifies signed OS images and writes them to the inactive /usr slot, arms one boot try
and commits after a healthy boot; driven by AKS annotations or an Omaha update server.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_FILE_NAME "abup-${PROJECT_VERSION}-${CMAKE_SYSTEM_PROCESSOR}")
set(CPACK_GENERATOR "DEB;RPM")
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_SOURCE_DIR}/cmake/package_guard.cmake)
set(CPACK_ABUP_FAULT_INJECTION ${ABUP_FAULT_INJECTION})  # CPACK_*: seen by cpack's scripts

set(scripts ${CMAKE_CURRENT_SOURCE_DIR}/packaging)
# DEB
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${scripts}/conffiles ${scripts}/postinst ${scripts}/prerm ${scripts}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# RPM
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_LICENSE "MIT")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Base")
set(CPACK_RPM_PACKAGE_AUTOREQ ON)
set(CPACK_PACKAGE_RELOCATABLE OFF)  # /etc/abup and /usr/share/abup are fixed paths
set(CPACK_RPM_USER_FILELIST "%config(noreplace) /etc/abup/abup.conf")
set(CPACK_RPM_POST_INSTALL_SCRIPT_FILE ${scripts}/postinst)
set(CPACK_RPM_PRE_UNINSTALL_SCRIPT_FILE ${scripts}/prerm)
set(CPACK_RPM_POST_UNINSTALL_SCRIPT_FILE ${scripts}/postrm)
# Directories the distribution owns are not the package's.
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
    /etc /usr/lib/systemd /usr/lib/systemd/system /usr/lib/systemd/system-preset
    /usr/lib/tmpfiles.d /usr/lib/sysusers.d /usr/share/dbus-1 /usr/share/dbus-1/system.d
    /usr/share/dbus-1/system-services /usr/share/man /usr/share/man/man8 /usr/share/doc)
include(CPack)
