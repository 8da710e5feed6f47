#pragma once

// A throwaway PostgreSQL server for the tests: initdb into a temporary directory, then `postgres` listening on a
// Unix socket in that directory (and, when asked, on a TCP port of 127.0.0.1), stopped and removed at the end. As
// root (CI), both run as the `postgres` user (PostgreSQL refuses to run as root). Found under
// /usr/lib/postgresql/<version>/bin (Debian's postgresql package).

#include "support/temp_dir.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>

namespace coring_test {

class pg_server {
public:
    /// The directory of initdb, pg_ctl and postgres; empty when PostgreSQL is not installed.
    static std::string bin_dir() {
        std::error_code ec;
        std::string best;
        for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
            const auto bin = e.path() / "bin";
            if (std::filesystem::exists(bin / "initdb") && std::filesystem::exists(bin / "postgres"))
                if (bin.string() > best) best = bin.string();
        }
        return best;
    }

    /// A server on its Unix socket only, or also on 127.0.0.1:`tcp_port` (the socket then carries that number too).
    explicit pg_server(std::uint16_t tcp_port = 0) : dir_("coring-pg"), port_(tcp_port ? tcp_port : 5432) {
        const std::string bin = bin_dir();
        if (bin.empty()) throw std::runtime_error("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)");
        const std::string data = dir_.path() + "/data";
        std::string as_user;
        if (::geteuid() == 0) {
            // The postgres user must reach and own the directory.
            ::chmod(dir_.path().c_str(), 0777);
            as_user = "runuser -u postgres -- ";
        }
        sh("cd / && " + as_user + bin + "/initdb -A trust -U coring -D " + data + " >" + dir_.path() +
           "/initdb.log 2>&1");
        sh("cd / && " + as_user + bin + "/pg_ctl -w -t 60 -D " + data + " -l " + dir_.path() + "/server.log -o \"-k " +
           dir_.path() + " -c listen_addresses='" + (tcp_port ? "127.0.0.1" : "") + "' -p " + std::to_string(port_) +
           "\" start >/dev/null 2>&1");
        started_ = true;
        stop_cmd_ = "cd / && " + as_user + bin + "/pg_ctl -D " + data + " -m immediate stop >/dev/null 2>&1";
    }
    pg_server(const pg_server&) = delete;
    pg_server& operator=(const pg_server&) = delete;
    ~pg_server() {
        if (started_) (void)std::system(stop_cmd_.c_str());
    }

    /// libpq's connection string for this server.
    [[nodiscard]] std::string conninfo() const {
        return "host=" + dir_.path() + " port=" + std::to_string(port_) + " user=coring dbname=postgres";
    }
    /// The port: the TCP one, or 5432 for the Unix socket alone.
    [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

private:
    void sh(const std::string& cmd) {
        const int r = std::system(cmd.c_str());
        if (r != 0)
            throw std::runtime_error("`" + cmd + "` failed (" + std::to_string(r) + "); see the logs in " +
                                     dir_.path());
    }

    temp_dir dir_;
    std::uint16_t port_;
    bool started_ = false;
    std::string stop_cmd_;
};

} // namespace coring_test
