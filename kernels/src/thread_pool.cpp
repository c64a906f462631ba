#include "prism/thread_pool.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace prism {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

// How long an idle worker (or a caller waiting for workers) spins before it blocks. Long enough
// to bridge the gap between two layers of one inference, short enough not to burn a core.
constexpr auto kSpin = std::chrono::microseconds(100);

// Spin until pred() holds or kSpin has passed; true when pred() held.
template <class Pred>
bool spin_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 1;; ++i) {
    if (pred()) return true;
    cpu_relax();
    if ((i & 63) == 0 && std::chrono::steady_clock::now() > deadline) return pred();
  }
}

// The job word packs the job's generation (upper bits) with its helper count (lower 16 bits),
// so a worker learns in one atomic load whether a new job exists and whether it may help.
constexpr int kHelperBits = 16;
constexpr std::uint64_t kHelperMask = (1u << kHelperBits) - 1;

// The entry word admits helpers into a job: generation (upper bits), a closed flag and the
// count of helpers that entered (lower 16 bits). When the caller has run out of tasks it closes
// the job and waits only for the helpers that entered; a helper that the OS schedules late (the
// machine is busy) finds the job closed and leaves without touching it. So a caller never waits
// for a thread that did no work.
constexpr std::uint64_t kClosed = std::uint64_t(1) << kHelperBits;
constexpr int kEntryGenerationShift = kHelperBits + 1;

}  // namespace

struct ThreadPool::State {
  std::mutex call_mutex;  // one job (or one reserve) at a time
  std::mutex mutex;       // guards sleeping and waking, and `error`
  std::condition_variable wake, done;
  std::vector<std::thread> threads;
  std::atomic<bool> stop{false};

  std::atomic<std::uint64_t> job_word{0};
  std::atomic<std::uint64_t> entry{0};
  // The current job, written by the caller before job_word changes (release) and read only by
  // helpers that entered it.
  const std::function<void(std::int64_t)>* fn = nullptr;
  std::int64_t tasks = 0;
  std::atomic<std::int64_t> next{0};
  std::atomic<int> finished{0};  // entered helpers that are done
  std::atomic<bool> failed{false};
  std::exception_ptr error;

  void run_tasks() {
    for (;;) {
      const std::int64_t t = next.fetch_add(1, std::memory_order_relaxed);
      if (t >= tasks || failed.load(std::memory_order_relaxed)) return;
      try {
        (*fn)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!error) error = std::current_exception();
        failed.store(true);
      }
    }
  }

  // True when this helper entered the job of `generation` (it is still open).
  bool enter(std::uint64_t generation) {
    std::uint64_t e = entry.load(std::memory_order_acquire);
    for (;;) {
      if ((e >> kEntryGenerationShift) != generation || (e & kClosed)) return false;
      if (entry.compare_exchange_weak(e, e + 1, std::memory_order_acq_rel)) return true;
    }
  }

  void worker(int id, std::uint64_t seen) {
    for (;;) {
      std::uint64_t word = seen;
      auto fresh = [&] {
        word = job_word.load(std::memory_order_acquire);
        return (word >> kHelperBits) != (seen >> kHelperBits) || stop.load();
      };
      if (!spin_until(fresh)) {
        std::unique_lock<std::mutex> lock(mutex);
        wake.wait(lock, fresh);
      }
      if (stop.load()) return;
      seen = word;
      if (id >= static_cast<int>(word & kHelperMask) || !enter(word >> kHelperBits)) continue;
      run_tasks();
      finished.fetch_add(1, std::memory_order_acq_rel);
      std::lock_guard<std::mutex> lock(mutex);
      done.notify_one();
    }
  }

  void grow(int workers) {
    while (static_cast<int>(threads.size()) < workers) {
      const int id = static_cast<int>(threads.size());
      const std::uint64_t seen = job_word.load();
      threads.emplace_back([this, id, seen] { worker(id, seen); });
    }
  }
};

ThreadPool::ThreadPool(int workers) : state_(new State) {
  state_->grow(std::min<int>(std::max(0, workers), kHelperMask));
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stop.store(true);
  }
  state_->wake.notify_all();
  for (auto& t : state_->threads) t.join();
}

int ThreadPool::max_threads() const {
  std::lock_guard<std::mutex> lock(state_->call_mutex);
  return static_cast<int>(state_->threads.size()) + 1;
}

void ThreadPool::reserve(int threads) {
  std::lock_guard<std::mutex> lock(state_->call_mutex);
  state_->grow(std::min<int>(threads - 1, kHelperMask));
}

void ThreadPool::parallel_for(std::int64_t tasks, int threads,
                              const std::function<void(std::int64_t)>& fn) {
  if (tasks <= 0) return;
  State& s = *state_;
  std::lock_guard<std::mutex> call(s.call_mutex);
  const std::int64_t cap = std::min<std::int64_t>(
      {static_cast<std::int64_t>(threads), static_cast<std::int64_t>(s.threads.size()) + 1, tasks});
  if (cap <= 1) {
    for (std::int64_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  const int helpers = static_cast<int>(cap) - 1;
  s.fn = &fn;
  s.tasks = tasks;
  s.next.store(0, std::memory_order_relaxed);
  s.failed.store(false, std::memory_order_relaxed);
  s.finished.store(0, std::memory_order_relaxed);
  {
    // Publishing under the mutex pairs with the sleeping workers' predicate check, so none
    // misses the wake-up.
    std::lock_guard<std::mutex> lock(s.mutex);
    s.error = nullptr;
    const std::uint64_t generation = (s.job_word.load() >> kHelperBits) + 1;
    s.entry.store(generation << kEntryGenerationShift, std::memory_order_release);
    s.job_word.store((generation << kHelperBits) | static_cast<std::uint64_t>(helpers),
                     std::memory_order_release);
  }
  s.wake.notify_all();
  s.run_tasks();
  const int entered = static_cast<int>(s.entry.fetch_or(kClosed, std::memory_order_acq_rel) &
                                       kHelperMask);
  auto finished = [&] { return s.finished.load(std::memory_order_acquire) == entered; };
  if (!spin_until(finished)) {
    std::unique_lock<std::mutex> lock(s.mutex);
    s.done.wait(lock, finished);
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    std::swap(error, s.error);
  }
  if (error) std::rethrow_exception(error);
}

int hardware_thread_count() {
  // Cached: glibc answers hardware_concurrency() by reading /sys, several microseconds a call.
  static const int count = [] {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : static_cast<int>(n);
  }();
  return count;
}

ThreadPool& kernel_thread_pool() {
  static ThreadPool pool(hardware_thread_count() - 1);
  return pool;
}

}  // namespace prism
