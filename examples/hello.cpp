// Three tasks that each wait 2 seconds, run concurrently: the program takes about 2 seconds, not 6.
#include <coring/coring.hpp>

#include <chrono>
#include <cstdio>

using namespace std::chrono_literals;

coring::task<> job(const char* name) {
    std::printf("%s: start\n", name);
    co_await coring::sleep(2s);
    std::printf("%s: done\n", name);
}

coring::task<> main_task() {
    const auto start = std::chrono::steady_clock::now();
    co_await coring::gather(job("one"), job("two"), job("three"));
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
    std::printf("finished in %.2f s\n", elapsed.count());
}

int main() { coring::run(main_task()); }
