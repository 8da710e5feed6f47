// The program every consumer test builds: coring used only through its umbrella header.
#include <coring/coring.hpp>

#include <chrono>
#include <cstdio>

coring::task<int> answer() {
    co_await coring::sleep(std::chrono::milliseconds(1));
    co_return 42;
}

int main() {
    int v = coring::run(answer());
    std::printf("%d\n", v);
    return v == 42 ? 0 : 1;
}
