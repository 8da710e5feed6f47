#pragma once

// A scratch directory removed afterwards, with everything in it: the file tests' working directory, the test PKI's
// (support/tls_certs.hpp), the files CPython's http.server serves, nginx's prefix.

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace coring_test {

/// A fresh directory under $TMPDIR (or /tmp), "<prefix>-XXXXXX", removed with everything in it on destruction.
class temp_dir {
public:
    explicit temp_dir(std::string_view prefix = "coring-fs") {
        const char* base = std::getenv("TMPDIR");
        std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + std::string(prefix) + "-XXXXXX";
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    ~temp_dir() { remove_tree(path_); }

    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// path()/name
    [[nodiscard]] std::string operator/(std::string_view name) const { return path_ + "/" + std::string(name); }
    /// Writes `data` to path()/name (a relative path), making the directories on the way. Throws
    /// std::runtime_error when it cannot.
    void write(std::string_view name, std::string_view data) const {
        const std::filesystem::path p = std::filesystem::path(path_) / name;
        std::error_code ec;
        std::filesystem::create_directories(p.parent_path(), ec);
        std::ofstream f(p, std::ios::binary);
        f.write(data.data(), static_cast<std::streamsize>(data.size()));
        f.close();
        if (!f) throw std::runtime_error("cannot write " + p.string());
    }
    /// The content of path()/name, empty when it cannot be read.
    [[nodiscard]] std::string read(std::string_view name) const {
        std::ifstream f(std::filesystem::path(path_) / name, std::ios::binary);
        return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
    }

private:
    static void remove_tree(const std::string& p) {
        struct stat st {};
        if (::lstat(p.c_str(), &st) != 0) return;
        if (S_ISDIR(st.st_mode)) {
            ::chmod(p.c_str(), 0700); // a test may have taken the permissions away
            if (DIR* d = ::opendir(p.c_str())) {
                while (dirent* e = ::readdir(d)) {
                    const std::string n = e->d_name;
                    if (n != "." && n != "..") remove_tree(p + "/" + n);
                }
                ::closedir(d);
            }
            ::rmdir(p.c_str());
        } else {
            ::unlink(p.c_str());
        }
    }
    std::string path_;
};

} // namespace coring_test
