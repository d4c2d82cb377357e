// Dynamic batching: the requests for one model that are waiting when an instance comes free
// (or arrive within max_queue_delay_us of the first) are stacked along dim 0 into one forward
// call, up to max_batch_size rows, and each gets its own rows of the outputs back. Requests
// whose tensors differ in anything but their first dimension are never mixed. `instances`
// threads take batches from one queue, sharing the model's weights.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>

#include "server/metrics.h"
#include "server/served_model.h"

namespace tsnative::server {

class Batcher {
 public:
  // Starts model.config().instances threads. Stacks requests only if model.batching().
  Batcher(const ServedModel& model, ModelMetrics& metrics);
  // Runs what is queued, then stops the threads.
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // Queues one request's arguments (from ServedModel::arguments); the future gets its rows of
  // the outputs, or the model's exception.
  std::future<std::vector<at::Tensor>> submit(std::vector<at::Tensor> arguments);

 private:
  struct Job {
    std::vector<at::Tensor> arguments;
    int64_t rows;
    std::chrono::steady_clock::time_point queued;
    std::promise<std::vector<at::Tensor>> result;
  };

  void serve();
  // Takes the next batch off the queue (lock held): the first job and those that fit it.
  std::vector<Job> take_batch(std::unique_lock<std::mutex>& lock);
  void run(std::vector<Job>& batch);

  const ServedModel& model_;
  ModelMetrics& metrics_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> instances_;
};

// Whether two requests' arguments can share a forward call: the same count, and each pair of
// the same dtype and the same sizes past the first.
bool stackable(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b);

}  // namespace tsnative::server
