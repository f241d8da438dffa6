# The Debian package: `cpack -G DEB` in a build directory (README "Installing").
# It installs under /usr (the binary finds its modules relative to itself),
# ships the unit and /etc/wspush/app.lua (a conffile: the echo demo, which
# the unit serves on 127.0.0.1 only), makes the wspush user in postinst and
# enables or starts nothing. The files under /etc and /lib are a component
# of their own, left out of a plain `cmake --install`.
set(WS_DEB ${CMAKE_CURRENT_SOURCE_DIR}/packaging/deb)
install(FILES handlers/echo.lua DESTINATION /etc/wspush RENAME app.lua
        COMPONENT system EXCLUDE_FROM_ALL)
install(FILES ${WS_DEB}/wspush.service DESTINATION /lib/systemd/system
        COMPONENT system EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME wspush)
set(CPACK_PACKAGE_VENDOR wspush)
set(CPACK_PACKAGE_CONTACT "wspush developers <wspush@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "WebSocket server with a C core and Lua handlers")
set(CPACK_PACKAGE_DESCRIPTION "wspush serves HTTP and WebSocket connections; what it answers is
written in Lua. Scripts reload without dropping connections; --workers N runs
one process per core; publishes reach other nodes through Redis.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL Unspecified system)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# The shared libraries by dpkg-shlibdeps; what the Lua modules require
# ("cjson") and what postinst runs, by name.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "lua-cjson, adduser")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${WS_DEB}/conffiles ${WS_DEB}/postinst ${WS_DEB}/prerm
    ${WS_DEB}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
