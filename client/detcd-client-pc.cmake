# Install-time step (cmake --install): writes lib/pkgconfig/detcd-client.pc
# with the prefix actually installed to, which --prefix may change after
# configuration. Inputs: DETCD_PC_IN, DETCD_PC_LIBDIR, DETCD_PC_INCLUDEDIR,
# DETCD_CLIENT_VERSION.
set(DETCD_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
if(DEFINED ENV{DESTDIR} AND NOT "$ENV{DESTDIR}" STREQUAL "")
  set(_out "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
else()
  set(_out "${CMAKE_INSTALL_PREFIX}")
endif()
set(_out "${_out}/${DETCD_PC_LIBDIR}/pkgconfig/detcd-client.pc")
configure_file("${DETCD_PC_IN}" "${_out}" @ONLY)
message(STATUS "Installing: ${_out}")
