# Defines coring::http (see the top-level CMakeLists.txt). Sets CORING_HTTP_FOUND, and CORING_HTTP_WITH_JSON when
# coring::http links nlohmann/json.
include(GNUInstallDirs)
set(CORING_HTTP_FOUND FALSE)
set(CORING_LLHTTP_INCLUDE_DIR
    ""
    CACHE PATH "Directory holding llhttp.h (default: Debian's node-llhttp, /usr/share/include/llhttp)")
set(CORING_LLHTTP_SOURCE_DIR
    ""
    CACHE PATH "Directory holding llhttp's api.c, http.c and llhttp.c (default: /usr/share/llhttp)")

if(TARGET llhttp::llhttp)
    set(_coring_llhttp_target llhttp::llhttp)
else()
    find_path(
        _coring_llhttp_include llhttp.h
        HINTS ${CORING_LLHTTP_INCLUDE_DIR}
        PATHS /usr/share/include/llhttp /usr/include/llhttp /usr/local/include/llhttp
        NO_CACHE)
    set(_coring_llhttp_sources "")
    foreach(_f api.c http.c llhttp.c)
        find_file(
            _coring_llhttp_${_f} ${_f}
            HINTS ${CORING_LLHTTP_SOURCE_DIR}
            PATHS /usr/share/llhttp /usr/local/share/llhttp
            NO_CACHE NO_DEFAULT_PATH)
        if(_coring_llhttp_${_f})
            list(APPEND _coring_llhttp_sources "${_coring_llhttp_${_f}}")
        endif()
    endforeach()
    list(LENGTH _coring_llhttp_sources _coring_llhttp_count)
    if(NOT _coring_llhttp_include OR NOT _coring_llhttp_count EQUAL 3)
        message(
            WARNING
                "coring: llhttp not found, so coring::http is not built. Install Debian's node-llhttp "
                "(apt-get install node-llhttp), set CORING_LLHTTP_INCLUDE_DIR and CORING_LLHTTP_SOURCE_DIR, or define "
                "an llhttp::llhttp target before adding coring.")
        return()
    endif()
    enable_language(C)
    add_library(coring_llhttp STATIC ${_coring_llhttp_sources})
    target_include_directories(coring_llhttp PUBLIC "$<BUILD_INTERFACE:${_coring_llhttp_include}>"
                                                    "$<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}/coring/llhttp>")
    set_target_properties(coring_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
    # Not our code: build it as its authors do, without our warnings.
    target_compile_options(coring_llhttp PRIVATE -w)
    if(CORING_SANITIZE)
        target_compile_options(coring_llhttp PRIVATE -fsanitize=${CORING_SANITIZE} -fno-omit-frame-pointer)
    endif()
    set(_coring_llhttp_target coring_llhttp)
    set(CORING_LLHTTP_HEADER "${_coring_llhttp_include}/llhttp.h")
endif()

add_library(coring_http INTERFACE)
add_library(coring::http ALIAS coring_http)
target_sources(
    coring_http
    INTERFACE FILE_SET
              HEADERS
              BASE_DIRS
              "${PROJECT_SOURCE_DIR}/include"
              FILES
              ${CORING_HTTP_HEADERS})
target_link_libraries(coring_http INTERFACE coring::coring ${_coring_llhttp_target})
# HTTPS: with coring::tls, the client fetches https:// URLs and the server serves TLS (CORING_HTTP_TLS tells the
# headers; a build without CMake defines it itself and links OpenSSL).
if(CORING_TLS_FOUND)
    target_link_libraries(coring_http INTERFACE coring::tls)
    target_compile_definitions(coring_http INTERFACE CORING_HTTP_TLS=1)
endif()
set(CORING_HTTP_FOUND TRUE)

# permessage-deflate for WebSockets (websocket_options::permessage_deflate) through zlib, when it is found.
option(CORING_ZLIB "Give coring::http's WebSockets permessage-deflate through zlib when it is found" ON)
set(CORING_HTTP_WITH_ZLIB FALSE)
if(CORING_ZLIB)
    find_package(ZLIB QUIET)
    if(ZLIB_FOUND)
        target_link_libraries(coring_http INTERFACE ZLIB::ZLIB)
        target_compile_definitions(coring_http INTERFACE CORING_HTTP_ZLIB=1)
        set(CORING_HTTP_WITH_ZLIB TRUE)
    else()
        message(STATUS "coring: zlib not found: WebSockets without permessage-deflate (apt-get install zlib1g-dev)")
    endif()
endif()

# JSON bodies (<coring/http/json.hpp>): the headers find <nlohmann/json.hpp> by themselves (__has_include), so a
# consumer without CMake gets them too. Here, nlohmann/json's CMake package, when found, is linked so that its include
# directory reaches coring's users wherever it is installed; CORING_JSON=OFF defines CORING_NO_JSON for them instead.
option(CORING_JSON "Give coring::http its JSON calls through nlohmann/json when it is found (OFF: CORING_NO_JSON)" ON)
set(CORING_HTTP_WITH_JSON FALSE)
if(CORING_JSON)
    find_package(nlohmann_json 3 QUIET)
    if(nlohmann_json_FOUND)
        target_link_libraries(coring_http INTERFACE nlohmann_json::nlohmann_json)
        set(CORING_HTTP_WITH_JSON TRUE)
        message(STATUS "coring: coring::http uses nlohmann/json ${nlohmann_json_VERSION} (${nlohmann_json_DIR})")
    else()
        message(STATUS "coring: nlohmann/json's CMake package not found: coring::http's JSON calls exist only where "
                       "<nlohmann/json.hpp> is on the include path (apt-get install nlohmann-json3-dev)")
    endif()
else()
    target_compile_definitions(coring_http INTERFACE CORING_NO_JSON)
endif()
