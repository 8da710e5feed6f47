#pragma once

// Files and filesystem operations on io_uring: file, read_file / write_file, rename, remove, create_directory.
#include <coring/fs/aligned_buffer.hpp>
#include <coring/fs/file.hpp>
#include <coring/fs/filesystem.hpp>
#include <coring/fs/open_mode.hpp>
#include <coring/fs/whole_file.hpp>
