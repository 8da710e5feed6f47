// coring::http's HTTPS client against nginx with TLS (a server nobody here wrote): static files (a small one and
// 5 MiB), `return 200 "..."`, keep-alive over one TLS connection (nginx's $connection in a header), HTTP/1.1 agreed
// over ALPN ($ssl_alpn_protocol), and a certificate for another host name refused. nginx runs with one worker, in the
// foreground, from a temporary prefix of its own (config, pid, logs, files), on a free port of 127.0.0.1, with the
// test PKI's leaf certificate (support/tls_certs.hpp). Skipped, with a warning, where nginx is not installed
// (CORING_TEST_NGINX names another binary).

#include "support/helpers.hpp"
#include "support/net_helpers.hpp"

#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <catch2/catch.hpp>

#if CORING_HTTP_TLS // coring::http without OpenSSL: nothing to test here

#include "support/https_helpers.hpp"
#include "support/peer_process.hpp"
#include "support/temp_dir.hpp"
#include "support/tls_certs.hpp"

#include <coring/tls.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace test_https_nginx {

using namespace std::chrono_literals;
using coring::task;
using coring::http::client;
using coring::http::client_response;
using coring_test::caught;
using coring_test::contains;
using coring_test::failure;
using coring_test::get;
using coring_test::tls_certs;
using coring_test::trusting_options;

namespace {

constexpr std::string_view returned_text = "Hello from nginx's return over TLS\n";
constexpr std::string_view small_text = "a small static file, served by nginx over TLS\n";
constexpr std::size_t big_size = 5 * 1024 * 1024;

std::uint64_t checksum(std::string_view s) {
    coring_test::checksum sum;
    sum.update(s);
    return sum.value();
}

/// 5 MiB that no two offsets of a short period repeat (an xorshift stream), so a misplaced or lost record shows.
std::string big_content() { return coring_test::pattern(1).text(big_size); }

/// The nginx binary (CORING_TEST_NGINX if set), or empty when none is installed.
std::string nginx_binary() {
    if (const char* e = std::getenv("CORING_TEST_NGINX")) return coring_test::executable(e) ? e : "";
    for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"})
        if (coring_test::executable(p)) return p;
    return {};
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
    for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
        s.replace(at, from.size(), to);
}

bool accepting(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    return ok;
}

/// nginx (master and one worker, daemon off) in a temporary prefix, serving over TLS on 127.0.0.1:`port` with the test
/// leaf and on `wrong_port` with the leaf for another host name. Stopped (SIGTERM, waited for) by stop() or the
/// destructor; the prefix is removed.
class nginx_tls : coring_test::spawned_process {
public:
    std::uint16_t port = 0;
    std::uint16_t wrong_port = 0;
    const coring_test::temp_dir dir{"coring-nginx"}; // the prefix

    explicit nginx_tls(const std::string& binary) {
        try {
            start(binary);
        } catch (...) { // a failed start leaves no nginx behind (and no prefix: dir goes with the object)
            (void)stop();
            throw;
        }
    }
    ~nginx_tls() { (void)stop(); }

    /// Fast shutdown (SIGTERM: the master stops its worker, then exits); its wait status, or nullopt when it had to
    /// be killed after 10 s or was not running.
    std::optional<int> stop() {
        if (pid_ <= 0) return std::nullopt;
        ::kill(pid_, SIGTERM);
        bool timed_out = false;
        const int status = coring_test::wait_child(pid_, 10'000ms, &timed_out);
        pid_ = -1;
        if (timed_out) return std::nullopt;
        return status;
    }

    /// What nginx wrote to its logs (for failure messages).
    [[nodiscard]] std::string logs() const {
        return "error.log:\n" + dir.read("error.log") + "\nstdout/stderr:\n" + dir.read("stdout.log");
    }

private:
    void start(const std::string& binary) {
        const tls_certs& pki = tls_certs::get();
        port = coring_test::free_port();
        do wrong_port = coring_test::free_port();
        while (wrong_port == port);
        dir.write("html/small.txt", small_text);
        dir.write("html/big.bin", big_content());
        const std::string d = dir.path();
        std::string conf = R"(@USER@
daemon off;
master_process on;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path @DIR@/body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    keepalive_requests 1000;
    keepalive_timeout 75s;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:@PORT@ ssl;
        ssl_certificate @CERT@;
        ssl_certificate_key @KEY@;
        root @DIR@/html;
        add_header X-Conn $connection always;
        add_header X-ALPN $ssl_alpn_protocol always;
        add_header X-TLS $ssl_protocol always;
        location = /return {
            default_type text/plain;
            return 200 "@RETURNED@\n";
        }
        location / { }
    }
    server {
        listen 127.0.0.1:@WRONG_PORT@ ssl;
        ssl_certificate @WRONG_CERT@;
        ssl_certificate_key @WRONG_KEY@;
        location / { return 200 "wrong host"; }
    }
}
)";
        replace_all(conf, "@USER@", ::geteuid() == 0 ? "user root root;" : "");
        replace_all(conf, "@DIR@", d);
        replace_all(conf, "@PORT@", std::to_string(port));
        replace_all(conf, "@CERT@", pki.leaf.cert.string());
        replace_all(conf, "@KEY@", pki.leaf.key.string());
        replace_all(conf, "@RETURNED@", returned_text.substr(0, returned_text.size() - 1));
        replace_all(conf, "@WRONG_PORT@", std::to_string(wrong_port));
        replace_all(conf, "@WRONG_CERT@", pki.wrong_host.cert.string());
        replace_all(conf, "@WRONG_KEY@", pki.wrong_host.key.string());
        dir.write("nginx.conf", conf);
        const std::string out = d + "/stdout.log";
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT, 0644);
        posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
        const int r = spawn({binary, "-p", d + "/", "-c", d + "/nginx.conf", "-e", d + "/error.log"}, fa);
        if (r != 0) FAIL("posix_spawn " << binary << ": " << std::strerror(r));
        const auto deadline = std::chrono::steady_clock::now() + 10s;
        while (!(accepting(port) && accepting(wrong_port))) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                FAIL("nginx exited at start: " << logs());
            }
            if (std::chrono::steady_clock::now() > deadline) FAIL("nginx is not listening after 10 s: " << logs());
            std::this_thread::sleep_for(20ms);
        }
    }
};

task<> fetch_all(client& c, std::uint16_t port, std::uint16_t wrong_port) {
    const std::string base = "https://localhost:" + std::to_string(port);

    client_response r = co_await get(c, base + "/small.txt");
    CHECK(r.status == 200);
    CHECK(r.version_minor == 1);
    CHECK(r.body == small_text);
    CHECK(r.headers.get_or("Server", "").starts_with("nginx"));
    CHECK(r.headers.get_or("X-ALPN", "") == "http/1.1"); // what nginx agreed over ALPN
    const std::string tls_version(r.headers.get_or("X-TLS", ""));
    CHECK((tls_version == "TLSv1.3" || tls_version == "TLSv1.2"));
    const std::string conn(r.headers.get_or("X-Conn", ""));
    CHECK(!conn.empty());

    r = co_await get(c, base + "/big.bin");
    CHECK(r.status == 200);
    CHECK(r.headers.get_or("Content-Length", "") == std::to_string(big_size));
    CHECK(r.body.size() == big_size);
    const std::uint64_t want = checksum(big_content());
    CHECK(checksum(r.body) == want);
    CHECK(r.headers.get_or("X-Conn", "") == conn);

    r = co_await get(c, base + "/return");
    CHECK(r.status == 200);
    CHECK(r.body == returned_text);
    CHECK(r.headers.get_or("Content-Type", "") == "text/plain");
    CHECK(r.headers.get_or("X-Conn", "") == conn);

    r = co_await get(c, base + "/missing");
    CHECK(r.status == 404);
    CHECK(r.headers.get_or("X-Conn", "") == conn);

    // Keep-alive: every request above and these went over one TLS connection (one $connection in nginx).
    for (int i = 0; i < 20; ++i) {
        r = co_await get(c, base + (i % 2 ? "/return" : "/small.txt"));
        CHECK(r.status == 200);
        CHECK(r.headers.get_or("X-Conn", "") == conn);
    }
    r = co_await get(c, base + "/big.bin");
    CHECK(checksum(r.body) == want);
    CHECK(r.headers.get_or("X-Conn", "") == conn);
    CHECK(c.connections_opened() == 1);
    CHECK(c.idle_connections() == 1);

    // 127.0.0.1 is in the certificate too: another origin, another connection (nginx counts it).
    r = co_await get(c, "https://127.0.0.1:" + std::to_string(port) + "/return");
    CHECK(r.body == returned_text);
    CHECK(r.headers.get_or("X-Conn", "") != conn);
    CHECK(c.connections_opened() == 2);

    // A server whose certificate names another host (wrong.example): the handshake fails, naming the URL.
    const std::string wrong = "https://localhost:" + std::to_string(wrong_port) + "/";
    task<caught> t = failure(c.get(wrong));
    const caught e = co_await std::move(t);
    CHECK(e.kind == "tls_error");
    INFO(e.what);
    CHECK(contains(e.what, "coring: http: GET " + wrong + ": tls handshake with localhost:"));
    CHECK(contains(e.what, "certificate verify failed"));
    CHECK(contains(e.what, "hostname mismatch"));
    CHECK(c.connections_opened() == 2); // a connection counts once its handshake succeeded
    CHECK(c.idle_connections() == 2);

    co_await c.close();
}

} // namespace

TEST_CASE("https nginx - coring's client fetches static files and return from nginx over TLS, one kept-alive "
          "connection, http/1.1 over ALPN, a wrong host name is refused",
          "[http][https][nginx]") {
    const std::string binary = nginx_binary();
    if (binary.empty()) {
        WARN("nginx is not installed: skipping the HTTPS client test against nginx");
        return;
    }
    const int fds = coring_test::open_fds();
    {
        nginx_tls server(binary);
        {
            client c(trusting_options());
            coring::run(fetch_all(c, server.port, server.wrong_port));
        }
        const std::optional<int> status = server.stop();
        REQUIRE(status.has_value());
        CHECK(WIFEXITED(*status));
        CHECK(WEXITSTATUS(*status) == 0);
        CHECK(!contains(server.dir.read("error.log"), "[emerg]"));
    }
    CHECK(coring_test::open_fds() == fds);
}

} // namespace test_https_nginx

#endif // CORING_HTTP_TLS
