# Defines coring::tls (see the top-level CMakeLists.txt): TLS over coring streams with OpenSSL 3, header-only.
# Sets CORING_TLS_FOUND.
set(CORING_TLS_FOUND FALSE)
find_package(OpenSSL 3.0 QUIET)
if(NOT OpenSSL_FOUND)
    message(WARNING "coring: OpenSSL 3 not found, so coring::tls (and HTTPS) is not built. Install Debian's "
                    "libssl-dev (apt-get install libssl-dev).")
    return()
endif()
add_library(coring_tls INTERFACE)
add_library(coring::tls ALIAS coring_tls)
target_sources(
    coring_tls
    INTERFACE FILE_SET
              HEADERS
              BASE_DIRS
              "${PROJECT_SOURCE_DIR}/include"
              FILES
              ${CORING_TLS_HEADERS})
target_link_libraries(coring_tls INTERFACE coring::coring OpenSSL::SSL OpenSSL::Crypto)
set_target_properties(coring_tls PROPERTIES EXPORT_NAME tls)
set(CORING_TLS_FOUND TRUE)
