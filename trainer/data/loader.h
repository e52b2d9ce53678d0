// Multi-threaded, deterministic, resumable batch loader with rank sharding.
//
// Order: epoch e visits EpochPermutation(N, seed, e, shuffle) (sampler.h); rank r of W takes
// positions r, r + W, ... (N / W samples, the remainder dropped), in batches of batch_size (the
// last, short batch is dropped when drop_last). Each sample's augmentation generator is seeded
// from (seed, epoch, dataset index) only (SampleSeed in random.h), so batches do not depend on
// thread scheduling, and a loader started at LoaderPosition P yields exactly the batches a fresh
// loader yields from P on.
//
// Corrupt samples (Dataset::Get errors) are logged to stderr once per index, counted, and
// replaced by the next sample of the epoch permutation (wrapping) that decodes; more than
// max_consecutive_failures failures in a row make that batch an error.
#ifndef PECO_TRAINER_DATA_LOADER_H_
#define PECO_TRAINER_DATA_LOADER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "torch/torch.h"
#include "trainer/data/dataset.h"
#include "trainer/data/transforms.h"

namespace peco::trainer {

struct LoaderOptions {
  int64_t batch_size = 8;
  int num_threads = 2;       // decoding/augmentation threads
  int prefetch_batches = 4;  // batches decoded ahead of Next() (ready or in progress); keep it
                             // >= num_threads so every thread has work
  uint64_t seed = 0;
  int rank = 0, world_size = 1;
  bool shuffle = true;
  bool drop_last = true;
  int max_consecutive_failures = 1000;  // corrupt samples in a row before a batch fails
  TransformOptions transform;
  // Further views of each sample, each from its own crop box, flip and photometric draws (the
  // asymmetric views of contrastive learning), drawn from the sample's generator after
  // `transform`'s. Their views follow `transform`'s in Batch::views and share the channel count
  // of `transform` (TransformOptions::OutputChannels).
  std::vector<TransformOptions> independent_views;

  // InvalidArgument naming the field: "data.batch_size: expected > 0", or a transform error
  // ("transform.<field>: ...").
  absl::Status Validate() const;
};

// A point in the loader's stream: the batch `batch` (0-based) of epoch `epoch`. Checkpoints store
// the position of the NEXT batch to produce.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  bool operator==(const LoaderPosition& o) const { return epoch == o.epoch && batch == o.batch; }
};

struct Batch {
  // One [B, C, S, S] float tensor per output size of `transform`, then of each independent view.
  std::vector<torch::Tensor> views;
  torch::Tensor labels;     // [B] int64
  torch::Tensor indices;    // [B] int64 dataset indices actually used (after replacement)
  LoaderPosition position;  // position of this batch
};

// Thread-safety: Next(), position() and the counters may be called from one consumer thread at a
// time (the counters are also safe from other threads). Internally num_threads workers decode
// and transform; the destructor stops and joins them without waiting for the consumer.
class DataLoader {
 public:
  // Shares ownership of `dataset` (whose Get() must be thread-safe). Validates options and
  // `start` (errors name the field), computes batches per epoch (FailedPrecondition when the
  // rank's shard holds no complete batch) and starts the worker threads.
  static absl::StatusOr<std::unique_ptr<DataLoader>> Create(std::shared_ptr<const Dataset> dataset,
                                                            LoaderOptions options,
                                                            LoaderPosition start = {});

  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Blocks until the next batch is ready and returns it, crossing epochs automatically. An error
  // (too many consecutive corrupt samples, allocation failure) still advances the position.
  absl::StatusOr<Batch> Next();

  LoaderPosition position() const;  // of the batch the next Next() returns
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t skipped_samples() const { return skipped_.load(); }  // failed Get()s so far
  double data_wait_seconds() const;                            // total time Next() spent blocked

 private:
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options,
             int64_t batches_per_epoch, int64_t start_sequence);

  void WorkerLoop();
  absl::StatusOr<Batch> BuildBatch(int64_t sequence);
  std::shared_ptr<const std::vector<int64_t>> Permutation(int64_t epoch);
  // Gets the sample at `position` of the epoch permutation, or the next one that decodes.
  absl::StatusOr<Example> GetOrReplace(const std::vector<int64_t>& permutation, int64_t position,
                                       int64_t* index);
  void LogOnce(int64_t index, const absl::Status& status);

  const std::shared_ptr<const Dataset> dataset_;
  const LoaderOptions options_;
  const int64_t batches_per_epoch_;
  const int64_t samples_per_rank_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;   // workers: a sequence number may be claimed, or stop
  std::condition_variable ready_cv_;  // consumer: a batch became ready
  int64_t next_claim_ = 0;            // guarded by mu_: next sequence a worker builds
  int64_t next_consume_ = 0;          // guarded by mu_: sequence Next() returns next
  std::map<int64_t, absl::StatusOr<Batch>> ready_;  // guarded by mu_
  bool stop_ = false;                               // guarded by mu_
  double wait_seconds_ = 0;                         // guarded by mu_
  std::atomic<bool> stopping_{false};  // lock-free mirror of stop_ for long-running workers

  std::mutex permutation_mu_;
  std::map<int64_t, std::shared_ptr<const std::vector<int64_t>>> permutations_;  // by epoch

  std::mutex log_mu_;
  std::set<int64_t> logged_;  // guarded by log_mu_

  std::atomic<int64_t> skipped_{0};
  std::vector<std::thread> threads_;
};

}  // namespace peco::trainer

#endif  // PECO_TRAINER_DATA_LOADER_H_
