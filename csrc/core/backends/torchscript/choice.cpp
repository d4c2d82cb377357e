// The TorchScript backend's choice among the variants of an optimize level: each warmed up and
// timed on an input (the warm-up input in load, or the first call's arguments), the fastest
// kept, and the choice remembered in the choice cache (choice_cache.h).
#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/backends/torchscript/backend.h"
#include "core/backends/torchscript/choice_cache.h"
#include "core/errors.h"

namespace tsnative {

TorchScriptBackend::ChoiceCacheContext TorchScriptBackend::looked_up(
    ChoiceCacheContext cache, const c10::Device& device, const std::vector<c10::IValue>& inputs) {
  if (cache.model_hash.empty()) return cache;
  cache.key = choice_key(cache.model_hash, cache.level, device.str(), inputs);
  if (const auto hit = cached_choice(cache.dir, cache.key)) {
    cache.remembered_variant = hit->variant;
    cache.remembered_timings = hit->timings;
  }
  return cache;
}

TorchScriptBackend::Candidate* TorchScriptBackend::choose(std::vector<Candidate>& candidates,
                                                          const std::vector<c10::IValue>& inputs,
                                                          int warmup_runs, const std::string& how,
                                                          const ChoiceCacheContext& cache,
                                                          std::vector<std::string>& notes,
                                                          std::exception_ptr& failure) const {
  if (cache.key.empty())
    return choose_fastest(candidates, inputs, warmup_runs, how, notes, failure);
  // A remembered choice may be the only candidate built (load builds just it), the saved
  // module included: it is still said to be remembered.
  if (!cache.remembered_variant.empty()) {
    const auto remembered =
        std::find_if(candidates.begin(), candidates.end(), [&cache](const Candidate& candidate) {
          return candidate.runner->variant == cache.remembered_variant;
        });
    if (remembered != candidates.end()) {
      // Warmed up alone; the others only if it fails (then noted, as any failure is).
      std::rotate(candidates.begin(), remembered, remembered + 1);
      for (auto other = candidates.begin() + 1; other != candidates.end(); ++other) {
        other->fallback_only = true;
      }
      auto* chosen = choose_fastest(candidates, inputs, warmup_runs, how, notes, failure);
      if (chosen == &candidates.front()) {
        chosen->runner->optimization +=
            " [remembered in " + cache.dir + ": " + cache.remembered_timings + "]";
      }
      return chosen;
    }
  }
  auto* chosen = choose_fastest(candidates, inputs, warmup_runs, how, notes, failure);
  if (chosen == nullptr || candidates.size() < 2) return chosen;  // no choice to remember
  // What choose_fastest appended: " [timed on ...: ...]" (nothing if one candidate worked).
  const auto& report = chosen->runner->optimization;
  const auto timed = report.find(" [timed on ", chosen->runner->variant.size());
  if (timed != std::string::npos) {
    const auto timings = report.substr(timed + 2, report.size() - timed - 3);
    if (const auto why = remember_choice(cache.dir, cache.key, {chosen->runner->variant, timings});
        !why.empty()) {
      notes.push_back("the choice is not remembered: " + why);
    }
  }
  return chosen;
}

TorchScriptBackend::Candidate* TorchScriptBackend::choose_fastest(
    std::vector<Candidate>& candidates, const std::vector<c10::IValue>& inputs, int warmup_runs,
    const std::string& how, std::vector<std::string>& notes, std::exception_ptr& failure) const {
  std::vector<Candidate*> working;
  for (auto& candidate : candidates) {
    if (candidate.fallback_only && !working.empty()) continue;
    try {
      // The profiling executor optimizes during these calls: fusion must be on for them.
      for (int i = 0; i < std::max(warmup_runs, 2); ++i) run_forward(*candidate.runner, inputs);
      working.push_back(&candidate);
    } catch (const InferenceError& e) {
      if (!failure) failure = std::current_exception();
      notes.push_back(candidate.runner->optimization + " failed on " + how + ": " +
                      first_line(e.what()));
    }
  }
  if (working.empty()) return nullptr;
  if (working.size() == 1) return working.front();  // warmed up; nothing to compare
  // Interleaved rounds, each in the other order than the last, so that a noisy moment on the
  // machine or a place in the round favours no candidate; medians, which a stall of the
  // machine in a few rounds does not move. Small models get more rounds, within a budget.
  constexpr int kMinRounds = 5, kMaxRounds = 21;
  constexpr double kBudgetMs = 250;
  double spent_ms = 0;
  int rounds = 0;
  while (rounds < kMinRounds || (rounds < kMaxRounds && spent_ms < kBudgetMs)) {
    for (size_t i = 0; i < working.size(); ++i) {
      auto* candidate = working[rounds % 2 == 0 ? i : working.size() - 1 - i];
      const auto start = std::chrono::steady_clock::now();
      run_forward(*candidate->runner, inputs);
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      candidate->times_ms.push_back(ms);
      spent_ms += ms;
    }
    ++rounds;
  }
  std::string timings;
  std::vector<double> medians;
  for (auto* candidate : working) {
    auto& times = candidate->times_ms;
    std::nth_element(times.begin(), times.begin() + rounds / 2, times.end());
    candidate->median_ms = times[rounds / 2];
    medians.push_back(candidate->median_ms);
    timings += (timings.empty() ? "" : ", ") + candidate->runner->optimization + " " +
               c10::str(std::round(candidate->median_ms * 100) / 100) + " ms";
  }
  auto* kept = working[pick_within_noise(medians)];
  const auto fastest = std::min_element(medians.begin(), medians.end());
  const bool simpler = kept->median_ms > *fastest;
  kept->runner->optimization +=
      " [timed on " + how + ": " + timings + "; medians of " + std::to_string(rounds) + " rounds" +
      (simpler ? ", the simpler kept within 5% of the fastest" : "") + "]";
  return kept;
}

size_t pick_within_noise(const std::vector<double>& medians, double tolerance) {
  const double fastest = *std::min_element(medians.begin(), medians.end());
  size_t kept = 0;
  for (size_t i = 0; i < medians.size(); ++i) {
    if (medians[i] <= fastest * (1 + tolerance)) kept = i;  // the last of them: the simplest
  }
  return kept;
}

void TorchScriptBackend::choose_on_first_call(const std::vector<c10::IValue>& args) const {
  auto& choice = *choice_;
  auto notes = choice.notes;
  std::exception_ptr failure;
  const auto start = std::chrono::steady_clock::now();
  const auto* chosen = choose(choice.candidates, args, choice.warmup_runs, "the first call",
                              looked_up(choice.cache, device_, args), notes, failure);
  // Arguments no candidate runs are the caller's mistake: that call fails as it would without
  // optimization, and the next call chooses again.
  if (chosen == nullptr) std::rethrow_exception(failure);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto runner = chosen->runner;
  runner->optimization +=
      " (the first call took " + c10::str(std::round(seconds * 100) / 100) + " s to choose)";
  for (const auto& note : notes) runner->optimization += "; " + note;
  {
    std::lock_guard<std::mutex> lock(runner_mutex_);
    runner_ = runner;
    choice.chosen = true;
  }
  choice.candidates.clear();  // the others' frozen copies of the weights are freed
}

}  // namespace tsnative
