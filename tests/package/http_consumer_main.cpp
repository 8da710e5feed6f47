// The program the coring::http consumer tests build: a server and a client over loopback, through <coring/http.hpp>;
// the answer travels as JSON when coring::http has nlohmann/json.
#include <coring/coring.hpp>
#include <coring/http.hpp>

#include <cstdio>
#include <string>

using coring::task;
using coring::http::request;
using coring::http::response;

task<std::string> answer() {
    coring::http::server app;
#if CORING_HTTP_HAS_JSON
    // With nlohmann/json (found through coring::http's usage requirements): a JSON body both ways.
    app.get("/answer", [](request&) -> task<response> {
        nlohmann::json value = {{"answer", 42}};
        co_return response::json(value);
    });
#else
    app.get("/answer", [](request&) -> task<response> { co_return response::text("42"); });
#endif
    auto listener = coring::tcp_listener::bind(coring::address::parse("127.0.0.1:0"));
    auto serving = coring::spawn(app.serve(listener));

    coring::http::client client;
    coring::http::client_response r = co_await client.get("http://" + listener.local_address().to_string() + "/answer");
    co_await client.close();
    app.shutdown();
    co_await serving;
#if CORING_HTTP_HAS_JSON
    if (r.ok()) co_return std::to_string(r.json().at("answer").get<int>());
#endif
    co_return r.ok() ? r.body : "HTTP " + std::to_string(r.status);
}

int main() {
    const std::string v = coring::run(answer());
    std::printf("%s\n", v.c_str());
    return v == "42" ? 0 : 1;
}
