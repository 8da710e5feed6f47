#pragma once

// TLS over coring streams (OpenSSL 3): link coring::tls.
#include <coring/tls/context.hpp>
#include <coring/tls/error.hpp>
#include <coring/tls/stream.hpp>
