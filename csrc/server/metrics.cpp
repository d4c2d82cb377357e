#include "server/metrics.h"

#include <atomic>

namespace tsnative::server {

namespace {

struct Counter {
  const char* name;
  const char* help;
  std::atomic<uint64_t> ModelMetrics::* value;
};

const Counter kCounters[] = {
    {"nv_inference_request_success", "Number of successful inference requests, all batch sizes",
     &ModelMetrics::request_success},
    {"nv_inference_request_failure", "Number of failed inference requests, all batch sizes",
     &ModelMetrics::request_failure},
    {"nv_inference_count", "Number of inferences performed (a batch of n counts n)",
     &ModelMetrics::inference_count},
    {"nv_inference_exec_count", "Number of model executions performed (a batch counts once)",
     &ModelMetrics::exec_count},
    {"nv_inference_request_duration_us", "Cumulative inference request duration in microseconds",
     &ModelMetrics::request_duration_us},
    {"nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds",
     &ModelMetrics::queue_duration_us},
    {"nv_inference_compute_infer_duration_us",
     "Cumulative compute inference duration in microseconds",
     &ModelMetrics::compute_infer_duration_us},
};

// A label value as Prometheus quotes it: backslash, quote and newline escaped.
std::string label(const std::string& value) {
  std::string out;
  for (const char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    out += c == '\n' ? std::string("\\n") : std::string(1, c);
  }
  return out;
}

}  // namespace

std::string prometheus_text(const std::vector<const ModelMetrics*>& models) {
  std::string text;
  for (const auto& counter : kCounters) {
    text += std::string("# HELP ") + counter.name + " " + counter.help + "\n";
    text += std::string("# TYPE ") + counter.name + " counter\n";
    for (const auto* model : models) {
      text += std::string(counter.name) + "{model=\"" + label(model->model) + "\",version=\"" +
              label(model->version) + "\"} " + std::to_string((model->*counter.value).load()) +
              "\n";
    }
  }
  return text;
}

}  // namespace tsnative::server
