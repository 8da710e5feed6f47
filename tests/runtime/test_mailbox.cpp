#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/detail/mailbox.hpp>

#include <catch2/catch.hpp>

#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

namespace test_mailbox {

using namespace std::chrono_literals;
using coring::task;

namespace {

#if defined(__SANITIZE_THREAD__)
constexpr int per_producer = 20000;
#else
constexpr int per_producer = 100000;
#endif
constexpr int producers = 4;

struct numbered : coring::detail::remote_item {
    int producer = 0;
    int seq = 0;
};

/// Receives producers x per_producer items from as many threads, checking that each arrives once and in its
/// producer's order, then resumes the awaiting task.
struct flood {
    std::vector<std::vector<numbered>> items;
    std::vector<int> next_seq = std::vector<int>(producers, 0);
    std::vector<std::thread> threads;
    std::coroutine_handle<> waiter{};
    int received = 0;
    int out_of_order = 0;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
        waiter = h;
        auto& loop = coring::event_loop::current();
        loop.remote_begin();
        items.resize(producers);
        for (int p = 0; p < producers; ++p) {
            items[p].resize(per_producer);
            for (int i = 0; i < per_producer; ++i) {
                numbered& n = items[p][i];
                n.producer = p;
                n.seq = i;
                n.run = &on_item;
            }
        }
        for (int p = 0; p < producers; ++p)
            threads.emplace_back([this, p, q = loop.remote()] {
                for (numbered& n : items[p]) {
                    const bool posted = q->post(&n);
                    if (!posted) std::abort();
                    // Now and then let the loop go to sleep, so that both the polled and the woken paths run.
                    if (n.seq % 4096 == 0) std::this_thread::sleep_for(200us);
                }
            });
    }
    void await_resume() {
        for (std::thread& t : threads) t.join();
    }
    static flood* self;
    static void on_item(coring::detail::remote_item* it) noexcept {
        auto* n = static_cast<numbered*>(it);
        if (self->next_seq[n->producer] != n->seq) ++self->out_of_order;
        self->next_seq[n->producer] = n->seq + 1;
        if (++self->received == producers * per_producer) {
            coring::event_loop::current().remote_end();
            coring::event_loop::current().schedule(self->waiter);
        }
    }
};
flood* flood::self = nullptr;

} // namespace

TEST_CASE("mailbox - many producers post items that each run once and in order on the loop", "[loop][mailbox]") {
    coring::event_loop loop;
    flood f;
    flood::self = &f;
    loop.run([](flood* fl) -> task<> { co_await *fl; }(&f));
    CHECK(f.received == producers * per_producer);
    CHECK(f.out_of_order == 0);
    for (int p = 0; p < producers; ++p) CHECK(f.next_seq[p] == per_producer);
    CHECK(loop.in_flight() == 0);
}

TEST_CASE("mailbox - a loop that is busy is not woken and a sleeping loop is woken once", "[loop][mailbox]") {
    coring::detail::mailbox box;
    numbered a, b, c;
    // Nobody sleeps: posts leave the eventfd alone.
    CHECK(box.post(&a));
    CHECK(box.post(&b));
    std::uint64_t count = 0;
    // The eventfd is blocking: look at its count through poll(2) instead of reading it.
    auto readable = [&] {
        pollfd p{box.fd(), POLLIN, 0};
        return ::poll(&p, 1, 0) == 1;
    };
    CHECK_FALSE(readable());
    // Something is posted: the loop must not go to sleep.
    CHECK_FALSE(box.prepare_to_sleep());
    coring::detail::remote_item* items = box.take_all();
    REQUIRE(items == &a);
    REQUIRE(items->next == &b);
    CHECK(items->next->next == nullptr);
    CHECK(box.take_all() == nullptr);
    // Asleep: the first post wakes, the second does not write again.
    CHECK(box.prepare_to_sleep());
    CHECK(box.post(&c));
    CHECK(readable());
    REQUIRE(::read(box.fd(), &count, sizeof count) == sizeof count);
    CHECK(count == 1);
    CHECK(box.post(&a));
    CHECK_FALSE(readable());
    box.awake();
    CHECK(box.take_all() == &c);
}

TEST_CASE("mailbox - once closed it refuses posts and returns what was not taken", "[loop][mailbox]") {
    coring::detail::mailbox box;
    numbered a, b, c;
    CHECK(box.post(&a));
    CHECK(box.post(&b));
    coring::detail::remote_item* left = box.close();
    REQUIRE(left == &a);
    CHECK(left->next == &b);
    CHECK(box.closed());
    CHECK_FALSE(box.post(&c));
    CHECK(box.take_all() == nullptr);
    CHECK(box.close() == nullptr);
}

TEST_CASE("mailbox - a loop destroyed runs what was posted before and refuses later posts", "[loop][mailbox]") {
    {
        coring::loop_options o;
        std::shared_ptr<coring::detail::mailbox> box;
        static int rejected = 0;
        static int ran = 0;
        rejected = ran = 0;
        numbered late, refused;
        late.run = refused.run = [](coring::detail::remote_item*) noexcept { ++ran; };
        late.reject = refused.reject = [](coring::detail::remote_item*) noexcept { ++rejected; };
        {
            coring::event_loop loop(o);
            box = loop.remote();
            // Posted before the destructor's drain, which runs it.
            CHECK(box->post(&late));
        }
        CHECK(ran == 1);
        CHECK(rejected == 0);
        CHECK_FALSE(box->post(&refused));
        CHECK(ran == 1);
        CHECK(rejected == 0);
    }
}

TEST_CASE("mailbox - a to_thread round trip still wakes an idle loop", "[loop][mailbox][thread]") {
    {
        coring::event_loop loop;
        const int sum = loop.run([]() -> task<int> {
            int s = 0;
            for (int i = 0; i < 200; ++i) {
                auto slow = [i] {
                    if (i % 50 == 0) std::this_thread::sleep_for(2ms);
                    return i;
                };
                const int v = co_await coring::to_thread(slow);
                s += v;
            }
            co_return s;
        }());
        CHECK(sum == 199 * 200 / 2);
        CHECK(loop.in_flight() == 0);
    }
}

} // namespace test_mailbox
