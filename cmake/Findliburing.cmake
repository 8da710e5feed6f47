#[=======================================================================[.rst:
Findliburing
------------

Finds liburing, the userspace library for Linux io_uring.

liburing ships a pkg-config file but no CMake package, so coring ships this module and installs it next to
``coringConfig.cmake``; an installed coring re-finds liburing through it.

The search asks pkg-config first (its answers are used as hints) and falls back to a plain search for ``liburing.h``
and ``liburing``. Set ``liburing_ROOT`` (or ``CMAKE_PREFIX_PATH``) to point it at a private installation.

Imported target
^^^^^^^^^^^^^^^

``liburing::liburing``
  The library, with its include directory as a usage requirement. Not redefined if it already exists.

Result variables
^^^^^^^^^^^^^^^^

``liburing_FOUND``, ``liburing_VERSION`` (when pkg-config or ``liburing/io_uring_version.h`` tells it),
``liburing_INCLUDE_DIRS``, ``liburing_LIBRARIES``.

Cache variables
^^^^^^^^^^^^^^^

``liburing_INCLUDE_DIR``, ``liburing_LIBRARY``.
#]=======================================================================]

include(FindPackageHandleStandardArgs)

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
    pkg_check_modules(PC_LIBURING QUIET liburing)
endif()

find_path(
    liburing_INCLUDE_DIR
    NAMES liburing.h
    HINTS ${PC_LIBURING_INCLUDEDIR} ${PC_LIBURING_INCLUDE_DIRS}
    DOC "Directory holding liburing.h")
find_library(
    liburing_LIBRARY
    NAMES uring liburing
    HINTS ${PC_LIBURING_LIBDIR} ${PC_LIBURING_LIBRARY_DIRS}
    DOC "The liburing library")
mark_as_advanced(liburing_INCLUDE_DIR liburing_LIBRARY)

# Version: pkg-config's, when it described the same installation; else the header's (liburing >= 2.4).
unset(liburing_VERSION)
if(PC_LIBURING_FOUND AND PC_LIBURING_VERSION)
    set(liburing_VERSION "${PC_LIBURING_VERSION}")
elseif(liburing_INCLUDE_DIR AND EXISTS "${liburing_INCLUDE_DIR}/liburing/io_uring_version.h")
    file(STRINGS "${liburing_INCLUDE_DIR}/liburing/io_uring_version.h" _liburing_version_lines
         REGEX "^#define IO_URING_VERSION_(MAJOR|MINOR)[ \t]+[0-9]+")
    string(REGEX REPLACE ".*IO_URING_VERSION_MAJOR[ \t]+([0-9]+).*" "\\1" _liburing_major "${_liburing_version_lines}")
    string(REGEX REPLACE ".*IO_URING_VERSION_MINOR[ \t]+([0-9]+).*" "\\1" _liburing_minor "${_liburing_version_lines}")
    if(_liburing_major MATCHES "^[0-9]+$" AND _liburing_minor MATCHES "^[0-9]+$")
        set(liburing_VERSION "${_liburing_major}.${_liburing_minor}")
    endif()
    unset(_liburing_version_lines)
    unset(_liburing_major)
    unset(_liburing_minor)
endif()

find_package_handle_standard_args(
    liburing
    REQUIRED_VARS liburing_LIBRARY liburing_INCLUDE_DIR
    VERSION_VAR liburing_VERSION)

if(liburing_FOUND)
    set(liburing_INCLUDE_DIRS "${liburing_INCLUDE_DIR}")
    set(liburing_LIBRARIES "${liburing_LIBRARY}")
    if(NOT TARGET liburing::liburing)
        add_library(liburing::liburing UNKNOWN IMPORTED)
        set_target_properties(
            liburing::liburing
            PROPERTIES IMPORTED_LOCATION "${liburing_LIBRARY}"
                       INTERFACE_INCLUDE_DIRECTORIES "${liburing_INCLUDE_DIR}")
    endif()
endif()
