// Random storms: hundreds of tasks hammer one primitive with random yields and sleeps while they are cancelled at
// random moments: by a chaos task (whatever they are doing: waiting, holding the grant, between two waits) and by
// targeted strikes right after a release, which hit the task the release has just handed the lock, permit or item to
// before it has run. The checks are the ones lost wake-ups break (pitfalls B-11): the run finishes (no task waits
// forever), permits and the lock are all back, and every item pushed is popped exactly once or is still in the queue.
// Seeded, so that a failure can be replayed; the sleeps make the interleaving vary a little from run to run anyway.
#include "support/helpers.hpp"

#include <coring/coring.hpp>
#include <coring/sync.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <vector>

namespace test_sync_storm {

using namespace std::chrono_literals;
using coring::task;

namespace {

constexpr std::uint32_t seed = 20240611;
constexpr double time_limit = 30.0; // seconds a storm may take before it counts as a deadlock
constexpr int rounds = 30;          // lock / acquire / wait rounds per worker
constexpr unsigned strike_odds = 8; // 1 in strike_odds releases is followed by a targeted strike

/// The tasks of one storm and what the test knows about them.
struct arena {
    std::vector<coring::join_handle<void>> tasks;
    std::vector<bool> struck;     // cancellation requested, by chaos or by a targeted strike
    std::deque<std::size_t> line; // tasks between "about to wait" and "done waiting", oldest first
    std::size_t budget = 0;       // cancellations allowed in all
    std::size_t strikes = 0;      // cancellations made
    std::size_t targeted = 0;     // of which right after a release

    explicit arena(std::size_t n, std::size_t max_cancels) : struck(n), budget(max_cancels) { tasks.reserve(n); }

    bool strike(std::size_t i) {
        // A finished task is not struck: its cancellation would change nothing and use up the budget (a storm whose
        // strikes all landed on finished tasks once ended with no cancelled producer at all).
        if (struck[i] || strikes >= budget || tasks[i].done()) return false;
        struck[i] = true;
        ++strikes;
        tasks[i].cancel();
        return true;
    }
    /// Cancels the oldest task in line that was not struck yet. Grants go to the line in order, so right after a
    /// release that is a task holding a fresh grant that has not run yet (or, when nothing was granted, the oldest
    /// waiter).
    void strike_front() {
        for (std::size_t i : line)
            if (!struck[i]) {
                if (strike(i)) ++targeted;
                return;
            }
    }
    [[nodiscard]] bool all_done() const {
        return std::all_of(tasks.begin(), tasks.end(), [](const auto& h) { return h.done(); });
    }
};

/// Keeps a task in its arena's line while it waits (or finds it need not wait).
class in_line {
public:
    in_line(arena& a, std::size_t self) : a_(a), self_(self) { a_.line.push_back(self_); }
    in_line(const in_line&) = delete;
    in_line& operator=(const in_line&) = delete;
    ~in_line() { a_.line.erase(std::find(a_.line.begin(), a_.line.end(), self_)); }

private:
    arena& a_;
    std::size_t self_;
};

/// A random pause: nothing, a yield or two, or a short sleep.
task<> jitter(std::mt19937& rng) {
    switch (rng() % 8) {
    case 0:
    case 1:
    case 2:
        co_return;
    case 3:
    case 4:
    case 5:
        co_await coring::yield_now();
        co_return;
    case 6:
        co_await coring::sleep(std::chrono::microseconds(rng() % 300));
        co_return;
    default:
        co_await coring::yield_now();
        co_await coring::yield_now();
        co_return;
    }
}

/// Until every task of `a` is done: on each loop turn, with probability 1 / `odds`, cancels a random one (sometimes a
/// burst of several in one turn), within the arena's budget.
task<> chaos(arena& a, std::mt19937& rng, unsigned odds) {
    while (!a.all_done()) {
        if (rng() % 8 == 0) co_await coring::sleep(std::chrono::microseconds(rng() % 200));
        else co_await coring::yield_now();
        if (rng() % odds != 0) continue;
        const unsigned burst = rng() % 4 == 0 ? 1 + rng() % 5 : 1;
        for (unsigned b = 0; b < burst; ++b) (void)a.strike(rng() % a.tasks.size());
    }
}

/// Waits (polling) until every task of `a` is done; false when that took longer than time_limit.
task<bool> wait_all(const arena& a) {
    coring_test::stopwatch sw;
    while (!a.all_done()) {
        if (sw.seconds() > time_limit) co_return false;
        co_await coring::sleep(1ms);
    }
    co_return true;
}

/// How the tasks of a storm ended.
struct endings {
    int finished = 0;
    int cancelled = 0;
    int other = 0; // anything else is a bug
};

task<endings> collect(arena& a) {
    endings e;
    for (auto& h : a.tasks) {
        try {
            co_await h;
            ++e.finished;
        } catch (const coring::cancelled_error&) {
            ++e.cancelled;
        } catch (...) {
            ++e.other;
        }
    }
    co_return e;
}

/// Counts the tasks inside a critical section, also when they leave it by an exception.
struct occupancy {
    int inside = 0;
    int most = 0;
};
class enter_section {
public:
    explicit enter_section(occupancy& o) : o_(o) {
        if (++o_.inside > o_.most) o_.most = o_.inside;
    }
    enter_section(const enter_section&) = delete;
    enter_section& operator=(const enter_section&) = delete;
    ~enter_section() { --o_.inside; }

private:
    occupancy& o_;
};

// ---- mutex ----------------------------------------------------------------------------------------------------------

task<> mutex_worker(arena& a, std::size_t self, coring::mutex& m, occupancy& occ, int& entries, std::mt19937& rng) {
    for (int round = 0; round < rounds; ++round) {
        co_await jitter(rng);
        coring::mutex::guard g = m.try_lock();
        if (!g) {
            in_line l(a, self);
            g = co_await m.lock();
        }
        {
            enter_section in(occ);
            ++entries;
            co_await jitter(rng); // holding the lock: a cancellation here must still unlock
        }
        g.unlock();                                     // hands the lock to the oldest waiter...
        if (rng() % strike_odds == 0) a.strike_front(); // ...which may be cancelled before it runs
    }
}

// ---- semaphore ------------------------------------------------------------------------------------------------------

class permit {
public:
    explicit permit(coring::semaphore& s) : s_(s) {}
    permit(const permit&) = delete;
    permit& operator=(const permit&) = delete;
    ~permit() { s_.release(); }

private:
    coring::semaphore& s_;
};

task<> semaphore_worker(arena& a, std::size_t self, coring::semaphore& s, occupancy& occ, int& entries,
                        std::mt19937& rng) {
    for (int round = 0; round < rounds; ++round) {
        co_await jitter(rng);
        if (!s.try_acquire()) {
            in_line l(a, self);
            co_await s.acquire();
        }
        {
            permit p(s);
            enter_section in(occ);
            ++entries;
            co_await jitter(rng);
        }
        if (rng() % strike_odds == 0) a.strike_front();
    }
}

// ---- queue ----------------------------------------------------------------------------------------------------------

struct ledger {
    std::vector<int> pushed; // per item id: 1 once its push returned normally
    std::vector<int> popped; // per item id: how many times a pop returned it
};

task<> producer(arena& prod, arena& cons, std::size_t self, coring::queue<int>& q, int first_id, int count, ledger& l,
                std::mt19937& rng) {
    for (int k = 0; k < count; ++k) {
        const int id = first_id + k;
        co_await jitter(rng);
        if (rng() % 4 != 0 || !q.try_push(id)) {
            in_line w(prod, self);
            co_await q.push(id); // cancelled_error here: the item was not enqueued
        }
        ++l.pushed[static_cast<std::size_t>(id)];
        // A push hands its item to the oldest waiting popper, which may be cancelled before it runs.
        if (rng() % strike_odds == 0) cons.strike_front();
    }
}

task<> consumer(arena& prod, arena& cons, std::size_t self, coring::queue<int>& q, ledger& l, std::mt19937& rng) {
    for (;;) {
        co_await jitter(rng);
        std::optional<int> got;
        if (rng() % 4 == 0) got = q.try_pop();
        if (!got) {
            in_line w(cons, self);
            try {
                got = co_await q.pop();
            } catch (const coring::queue_closed&) {
                co_return; // closed and drained
            }
        }
        ++l.popped[static_cast<std::size_t>(*got)];
        // A pop from a full queue lets the oldest waiting pusher in, which may be cancelled before it runs.
        if (rng() % strike_odds == 0) prod.strike_front();
    }
}

// ---- event ----------------------------------------------------------------------------------------------------------

struct wait_counts {
    int entered = 0;  // waits started
    int returned = 0; // waits that returned normally
};

task<> event_waiter(arena& a, std::size_t self, coring::event& e, wait_counts& c, std::mt19937& rng) {
    for (int round = 0; round < rounds; ++round) {
        co_await jitter(rng);
        ++c.entered;
        {
            in_line w(a, self);
            co_await e.wait();
        }
        ++c.returned;
    }
}

/// Sets and clears the event at random until every waiter is done, and leaves it set. Right after a set(), it may
/// cancel some of the waiters it has just woken.
task<> event_driver(arena& a, coring::event& e, std::mt19937& rng) {
    while (!a.all_done()) {
        e.set();
        if (rng() % 2 == 0)
            for (unsigned n = rng() % 4; n > 0; --n) a.strike_front();
        co_await jitter(rng);
        e.clear();
        co_await jitter(rng);
        co_await coring::sleep(std::chrono::microseconds(rng() % 200));
    }
    e.set();
}

} // namespace

TEST_CASE("sync storm - mutex under random cancellation keeps mutual exclusion and ends unlocked",
          "[sync][mutex][storm]") {
    coring::run([]() -> task<> {
        constexpr std::size_t workers = 300;
        std::mt19937 rng(seed);
        coring::mutex m;
        occupancy occ;
        int entries = 0;
        arena a(workers, workers * 2 / 5);
        for (std::size_t i = 0; i < workers; ++i)
            a.tasks.push_back(coring::spawn(mutex_worker(a, i, m, occ, entries, rng)));
        auto ch = coring::spawn(chaos(a, rng, 16));
        const bool finished = co_await wait_all(a);
        REQUIRE(finished); // no deadlock: every worker finished or was cancelled
        co_await ch;
        const endings e = co_await collect(a);
        CHECK(e.other == 0);
        CHECK(e.finished + e.cancelled == static_cast<int>(workers));
        CHECK(e.cancelled > 0);
        CHECK(e.finished > 0);
        CHECK(a.targeted > 0);
        CHECK(occ.most == 1); // never two holders
        CHECK(occ.inside == 0);
        CHECK(entries > static_cast<int>(workers));
        CHECK_FALSE(m.locked());
        auto g = m.try_lock();
        CHECK(g.owns_lock());
    }());
}

TEST_CASE("sync storm - semaphore under random cancellation conserves its permits", "[sync][semaphore][storm]") {
    coring::run([]() -> task<> {
        constexpr std::size_t workers = 300;
        constexpr int permits = 7;
        std::mt19937 rng(seed + 1);
        coring::semaphore s(permits);
        occupancy occ;
        int entries = 0;
        arena a(workers, workers * 2 / 5);
        for (std::size_t i = 0; i < workers; ++i)
            a.tasks.push_back(coring::spawn(semaphore_worker(a, i, s, occ, entries, rng)));
        auto ch = coring::spawn(chaos(a, rng, 16));
        const bool finished = co_await wait_all(a);
        REQUIRE(finished);
        co_await ch;
        const endings e = co_await collect(a);
        CHECK(e.other == 0);
        CHECK(e.finished + e.cancelled == static_cast<int>(workers));
        CHECK(e.cancelled > 0);
        CHECK(a.targeted > 0);
        CHECK(occ.most <= permits);
        CHECK(occ.most > 1);
        CHECK(occ.inside == 0);
        CHECK(s.available() == permits); // every permit came back
    }());
}

TEST_CASE("sync storm - queue under random cancellation delivers every pushed item exactly once",
          "[sync][queue][storm]") {
    for (const std::size_t capacity : {std::size_t{1}, std::size_t{8}, std::size_t{0}}) {
        INFO("capacity " << capacity);
        coring::run([](std::size_t cap) -> task<> {
            constexpr std::size_t producers = 100, consumers = 100;
            constexpr int per_producer = 50;
            constexpr int total = static_cast<int>(producers) * per_producer;
            std::mt19937 rng(seed + 2 + static_cast<std::uint32_t>(cap));
            coring::queue<int> q(cap);
            ledger l;
            l.pushed.assign(total, 0);
            l.popped.assign(total, 0);
            // At most 30 consumers are cancelled, so that the others keep the producers going.
            arena prod(producers, 30), cons(consumers, 30);
            for (std::size_t i = 0; i < producers; ++i)
                prod.tasks.push_back(coring::spawn(
                    producer(prod, cons, i, q, static_cast<int>(i) * per_producer, per_producer, l, rng)));
            for (std::size_t i = 0; i < consumers; ++i)
                cons.tasks.push_back(coring::spawn(consumer(prod, cons, i, q, l, rng)));
            auto chaos_prod = coring::spawn(chaos(prod, rng, 8));
            auto chaos_cons = coring::spawn(chaos(cons, rng, 8));
            const bool produced = co_await wait_all(prod);
            REQUIRE(produced);
            co_await chaos_prod;
            q.close(); // the consumers drain what is left, then see queue_closed
            const bool consumed = co_await wait_all(cons);
            REQUIRE(consumed);
            co_await chaos_cons;
            const endings ep = co_await collect(prod);
            const endings ec = co_await collect(cons);
            CHECK(ep.other == 0);
            CHECK(ec.other == 0);
            CHECK(ep.cancelled > 0);
            CHECK(ec.cancelled > 0);
            CHECK(prod.targeted + cons.targeted > 0);

            std::vector<int> left(total, 0);
            std::size_t remaining = 0;
            while (auto v = q.try_pop()) {
                ++left[static_cast<std::size_t>(*v)];
                ++remaining;
            }
            long long pushed_count = 0, popped_count = 0, pushed_sum = 0, delivered_sum = 0;
            int duplicates = 0, lost = 0, phantoms = 0;
            for (std::size_t i = 0; i < static_cast<std::size_t>(total); ++i) {
                const int delivered = l.popped[i] + left[i];
                pushed_count += l.pushed[i];
                popped_count += l.popped[i];
                pushed_sum += static_cast<long long>(i) * l.pushed[i];
                delivered_sum += static_cast<long long>(i) * delivered;
                if (l.pushed[i] > 1 || delivered > 1) ++duplicates;
                if (l.pushed[i] == 1 && delivered == 0) ++lost;
                if (l.pushed[i] == 0 && delivered != 0) ++phantoms; // a cancelled push must not enqueue
            }
            CHECK(duplicates == 0);
            CHECK(lost == 0);
            CHECK(phantoms == 0);
            CHECK(pushed_count == popped_count + static_cast<long long>(remaining));
            CHECK(pushed_sum == delivered_sum); // the checksum
            CHECK(pushed_count > total / 2);
        }(capacity));
    }
}

TEST_CASE("sync storm - event under random cancellation loses no wake-up", "[sync][event][storm]") {
    coring::run([]() -> task<> {
        constexpr std::size_t workers = 300;
        std::mt19937 rng(seed + 3);
        coring::event e;
        wait_counts c;
        arena a(workers, workers * 2 / 5);
        for (std::size_t i = 0; i < workers; ++i) a.tasks.push_back(coring::spawn(event_waiter(a, i, e, c, rng)));
        auto driver = coring::spawn(event_driver(a, e, rng));
        auto ch = coring::spawn(chaos(a, rng, 16));
        const bool finished = co_await wait_all(a);
        REQUIRE(finished);
        co_await driver;
        co_await ch;
        const endings en = co_await collect(a);
        CHECK(en.other == 0);
        CHECK(en.finished + en.cancelled == static_cast<int>(workers));
        CHECK(en.cancelled > 0);
        CHECK(en.finished > 0);
        CHECK(a.targeted > 0);
        // Every wait returned, except at most one per cancelled task (the wait it was cancelled in).
        CHECK(c.returned <= c.entered);
        CHECK(c.entered - c.returned <= en.cancelled);
        CHECK(c.returned >= en.finished * rounds);
    }());
}

} // namespace test_sync_storm
