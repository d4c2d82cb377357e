// What the server counts, per model version, and its Prometheus text at /metrics under
// Triton's metric names, so dashboards built for Triton read it unchanged.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace tsnative::server {

struct ModelMetrics {
  std::string model, version;
  std::atomic<uint64_t> request_success{0};
  std::atomic<uint64_t> request_failure{0};
  std::atomic<uint64_t> inference_count{0};  // rows inferred (a batch of 8 counts 8)
  std::atomic<uint64_t> exec_count{0};       // forward calls (a batch of 8 counts 1)
  std::atomic<uint64_t> request_duration_us{0};
  std::atomic<uint64_t> queue_duration_us{0};
  std::atomic<uint64_t> compute_infer_duration_us{0};
};

// The counters of every model in Prometheus's text exposition format.
std::string prometheus_text(const std::vector<const ModelMetrics*>& models);

}  // namespace tsnative::server
