#pragma once

// Networking: addresses, name resolution, TCP, UDP and Unix-domain sockets.
#include <coring/net/address.hpp>
#include <coring/net/listener.hpp>
#include <coring/net/resolve.hpp>
#include <coring/net/stream.hpp>
#include <coring/net/tcp.hpp>
#include <coring/net/udp.hpp>
#include <coring/net/unix.hpp>
