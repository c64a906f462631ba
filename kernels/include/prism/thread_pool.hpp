// A small pool of worker threads that kernels reuse across calls.
//
// Starting a std::thread costs tens of microseconds, as much as a whole small convolution, so
// kernels never create threads per call: they hand tasks to this pool. Workers that finish a
// job spin for a short while (calls of consecutive layers come back-to-back), then sleep on a
// condition variable so that an idle pool costs no CPU.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

namespace prism {

class ThreadPool {
 public:
  // `workers` threads besides the calling thread, which always takes part in a job.
  explicit ThreadPool(int workers);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads a job can use: the workers plus the caller.
  int max_threads() const;

  // Adds workers until max_threads() >= threads (never removes any).
  void reserve(int threads);

  // Runs fn(task) once for every task in [0, tasks) on at most `threads` threads (the caller
  // included; capped at max_threads() and at `tasks`) and returns when all have run. Tasks are
  // handed out dynamically, so fn must not depend on which thread runs it. Calls from several
  // threads are serialized. If fn throws, the remaining tasks are skipped and the first
  // exception is rethrown here.
  void parallel_for(std::int64_t tasks, int threads, const std::function<void(std::int64_t)>& fn);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// std::thread::hardware_concurrency(), at least 1.
int hardware_thread_count();

// The process-wide pool of the kernels: hardware_thread_count() - 1 workers, created on first
// use. Callers that want more threads call reserve() on it.
ThreadPool& kernel_thread_pool();

}  // namespace prism
