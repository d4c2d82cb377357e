#include "server/batcher.h"

#include <algorithm>
#include <exception>
#include <utility>

#include <ATen/ATen.h>

#include "core/errors.h"

namespace tsnative::server {

namespace {

uint64_t microseconds(std::chrono::steady_clock::duration duration) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(duration).count());
}

}  // namespace

bool stackable(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].scalar_type() != b[i].scalar_type() || a[i].dim() != b[i].dim() || a[i].dim() == 0 ||
        a[i].sizes().slice(1) != b[i].sizes().slice(1)) {
      return false;
    }
  }
  return true;
}

Batcher::Batcher(const ServedModel& model, ModelMetrics& metrics)
    : model_(model), metrics_(metrics) {
  for (int64_t i = 0; i < model.config().instances; ++i) {
    instances_.emplace_back([this] { serve(); });
  }
}

Batcher::~Batcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  arrived_.notify_all();
  for (auto& instance : instances_) instance.join();
}

std::future<std::vector<at::Tensor>> Batcher::submit(std::vector<at::Tensor> arguments) {
  Job job;
  job.rows = model_.batching() ? arguments.at(0).size(0) : 1;
  job.arguments = std::move(arguments);
  job.queued = std::chrono::steady_clock::now();
  auto result = job.result.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
  }
  arrived_.notify_one();
  return result;
}

void Batcher::serve() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    arrived_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, with nothing left to run
    auto batch = take_batch(lock);
    lock.unlock();
    run(batch);
    lock.lock();
  }
}

std::vector<Batcher::Job> Batcher::take_batch(std::unique_lock<std::mutex>& lock) {
  std::vector<Job> batch;
  batch.push_back(std::move(queue_.front()));
  queue_.pop_front();
  if (!model_.batching()) return batch;
  const auto& config = model_.config();
  const auto deadline = batch[0].queued + std::chrono::microseconds(config.max_queue_delay_us);
  int64_t rows = batch[0].rows;
  const auto preferred = [&] {
    return std::find(config.preferred_batch_sizes.begin(), config.preferred_batch_sizes.end(),
                     rows) != config.preferred_batch_sizes.end();
  };
  while (rows < config.max_batch_size && !preferred()) {
    // The first waiting job that fits, in arrival order; others wait for a batch of their own.
    auto fits = std::find_if(queue_.begin(), queue_.end(), [&](const Job& job) {
      return rows + job.rows <= config.max_batch_size &&
             stackable(job.arguments, batch[0].arguments);
    });
    if (fits != queue_.end()) {
      rows += fits->rows;
      batch.push_back(std::move(*fits));
      queue_.erase(fits);
      continue;
    }
    if (stopping_ || std::chrono::steady_clock::now() >= deadline) break;
    arrived_.wait_until(lock, deadline);
  }
  return batch;
}

void Batcher::run(std::vector<Job>& batch) {
  const auto start = std::chrono::steady_clock::now();
  for (const auto& job : batch) metrics_.queue_duration_us += microseconds(start - job.queued);
  try {
    std::vector<at::Tensor> arguments;
    if (batch.size() == 1) {
      arguments = batch[0].arguments;
    } else {
      for (size_t i = 0; i < batch[0].arguments.size(); ++i) {
        std::vector<at::Tensor> parts;
        for (const auto& job : batch) parts.push_back(job.arguments[i]);
        arguments.push_back(at::cat(parts));
      }
    }
    auto outputs = model_.run(arguments);
    metrics_.exec_count += 1;
    int64_t rows = 0;
    for (const auto& job : batch) rows += job.rows;
    metrics_.inference_count += static_cast<uint64_t>(rows);
    metrics_.compute_infer_duration_us += microseconds(std::chrono::steady_clock::now() - start);
    if (batch.size() == 1) {
      batch[0].result.set_value(std::move(outputs));
      return;
    }
    // Each job's rows of every output (warm-up checked that outputs follow the batch; a model
    // whose output does not, at this batch, fails the whole batch rather than mix answers).
    for (const auto& output : outputs) {
      if (output.dim() == 0 || output.size(0) != rows) {
        throw InferenceError(model_.model().source() + " returned an output of " +
                             std::to_string(output.dim() ? output.size(0) : 0) +
                             " rows for a batch of " + std::to_string(rows));
      }
    }
    int64_t offset = 0;
    for (auto& job : batch) {
      std::vector<at::Tensor> mine;
      for (const auto& output : outputs) mine.push_back(output.narrow(0, offset, job.rows));
      offset += job.rows;
      job.result.set_value(std::move(mine));
    }
  } catch (...) {
    const auto error = std::current_exception();
    for (auto& job : batch) job.result.set_exception(error);
  }
}

}  // namespace tsnative::server
