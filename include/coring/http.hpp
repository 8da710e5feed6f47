#pragma once

// HTTP/1.1 on coring's streams: messages, a router, a server and a client. Needs the coring::http CMake target
// (llhttp, the parser behind Node.js); not included by <coring/coring.hpp>, which stays header-only.
#include <coring/http/client.hpp>
#include <coring/http/message.hpp>
#include <coring/http/router.hpp>
#include <coring/http/server.hpp>
#include <coring/http/url.hpp>
#include <coring/http/websocket.hpp>
