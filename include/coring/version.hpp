#pragma once

/// coring's version, as major * 10000 + minor * 100 + patch.
#define CORING_VERSION 100
#define CORING_VERSION_MAJOR 0
#define CORING_VERSION_MINOR 1
#define CORING_VERSION_PATCH 0
