#pragma once

// What the benchmark programs share: a console reporter that keeps every repetition's "per_op" counter, so that each
// program can print its figures beside their baselines once all have run.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace coring_bench {

/// The console reporter, keeping every repetition's "per_op" figure (in ns) for the summary. When a benchmark is
/// repeated, only its aggregates (mean, median, stddev, cv) are printed.
class summary_reporter : public benchmark::ConsoleReporter {
public:
    void ReportRuns(const std::vector<Run>& runs) override {
        bool repeated = false;
        for (const Run& r : runs) {
            repeated |= r.run_type == Run::RT_Iteration && r.repetitions > 1;
            auto it = r.counters.find("per_op");
            if (r.run_type != Run::RT_Iteration || r.error_occurred || it == r.counters.end()) continue;
            std::string key = r.run_name.function_name;
            if (!r.run_name.args.empty()) key += "/" + r.run_name.args;
            runs_[key].push_back(it->second.value * 1e9);
        }
        if (!repeated) ConsoleReporter::ReportRuns(runs);
    }

    /// The repetitions of benchmark `name` ("BM_x" or "BM_x/arg") in ns per operation, sorted; empty if it did not run.
    [[nodiscard]] std::vector<double> ns(const std::string& name) const {
        auto it = runs_.find(name);
        if (it == runs_.end()) return {};
        std::vector<double> v = it->second;
        std::sort(v.begin(), v.end());
        return v;
    }

private:
    std::map<std::string, std::vector<double>> runs_; // one entry per repetition
};

/// The median of sorted values (NaN for none).
inline double median(const std::vector<double>& sorted) {
    const std::size_t n = sorted.size();
    if (n == 0) return std::numeric_limits<double>::quiet_NaN();
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/// Runs the program's benchmarks as every bm_ program does: `repetitions` of each, in random order so that the
/// machine's drift spreads over coring and its baselines alike (the command line can override both), reported
/// through `reporter`. False when the command line holds an argument Google Benchmark does not know.
inline bool run_benchmarks(int argc, char** argv, summary_reporter& reporter, int repetitions) {
    std::string reps = "--benchmark_repetitions=" + std::to_string(repetitions);
    std::string interleave = "--benchmark_enable_random_interleaving=true";
    std::vector<char*> args{argv[0], reps.data(), interleave.data()};
    args.insert(args.end(), argv + 1, argv + argc);
    int n = static_cast<int>(args.size());
    args.push_back(nullptr);
    benchmark::Initialize(&n, args.data());
    if (benchmark::ReportUnrecognizedArguments(n, args.data())) return false;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    return true;
}

} // namespace coring_bench
