#include "trainer/data/loader.h"

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "trainer/data/random.h"
#include "trainer/data/sampler.h"
#include "trainer/util/torch_status.h"

namespace peco::trainer {
namespace {

constexpr int kMaxThreads = 256;
constexpr size_t kCachedPermutations = 3;

absl::Status FieldError(const char* field, const std::string& expected) {
  return absl::InvalidArgumentError(absl::StrCat("data.", field, ": expected ", expected));
}

absl::Status CheckImage(const Image& image) {
  if (image.height <= 0 || image.width <= 0 || (image.channels != 1 && image.channels != 3) ||
      image.pixels.size() != static_cast<size_t>(image.height) * image.width * image.channels) {
    return absl::DataLossError(absl::StrCat("malformed image ", image.height, "x", image.width, "x",
                                            image.channels, " with ", image.pixels.size(),
                                            " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LoaderOptions::Validate() const {
  if (batch_size <= 0) return FieldError("batch_size", "> 0");
  if (num_threads < 1 || num_threads > kMaxThreads) {
    return FieldError("num_threads", absl::StrCat("1 <= value <= ", kMaxThreads));
  }
  if (prefetch_batches < 1) return FieldError("prefetch_batches", ">= 1");
  if (world_size < 1) return FieldError("world_size", ">= 1");
  if (rank < 0 || rank >= world_size) return FieldError("rank", "0 <= value < world_size");
  if (max_consecutive_failures < 1) return FieldError("max_consecutive_failures", ">= 1");
  for (const TransformOptions& view : independent_views) RETURN_IF_ERROR(view.Validate());
  return transform.Validate();
}

absl::StatusOr<std::unique_ptr<DataLoader>> DataLoader::Create(
    std::shared_ptr<const Dataset> dataset, LoaderOptions options, LoaderPosition start) {
  if (dataset == nullptr) return absl::InvalidArgumentError("data: no dataset");
  RETURN_IF_ERROR(options.Validate());
  const int64_t per_rank = SamplesPerRank(dataset->size(), options.world_size);
  const int64_t batches = options.drop_last
                              ? per_rank / options.batch_size
                              : (per_rank + options.batch_size - 1) / options.batch_size;
  if (batches == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("data: ", dataset->name(), " has ", dataset->size(), " samples, ", per_rank,
                     " per rank with world_size ", options.world_size, ": fewer than one batch of ",
                     options.batch_size));
  }
  if (start.epoch < 0) return FieldError("position.epoch", ">= 0");
  if (start.batch < 0 || start.batch > batches) {
    return FieldError("position.batch", absl::StrCat("0 <= value <= ", batches,
                                                     " (batches per epoch), got ", start.batch));
  }
  const int64_t start_sequence = start.epoch * batches + start.batch;
  return std::unique_ptr<DataLoader>(
      new DataLoader(std::move(dataset), std::move(options), batches, start_sequence));
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options,
                       int64_t batches_per_epoch, int64_t start_sequence)
    : dataset_(std::move(dataset)),
      options_(std::move(options)),
      batches_per_epoch_(batches_per_epoch),
      samples_per_rank_(SamplesPerRank(dataset_->size(), options_.world_size)),
      next_claim_(start_sequence),
      next_consume_(start_sequence) {
  threads_.reserve(static_cast<size_t>(options_.num_threads));
  for (int i = 0; i < options_.num_threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    stopping_.store(true);
  }
  work_cv_.notify_all();
  ready_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

LoaderPosition DataLoader::position() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {next_consume_ / batches_per_epoch_, next_consume_ % batches_per_epoch_};
}

double DataLoader::data_wait_seconds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return wait_seconds_;
}

absl::StatusOr<Batch> DataLoader::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  const int64_t sequence = next_consume_;
  auto it = ready_.find(sequence);
  if (it == ready_.end()) {
    const auto begin = std::chrono::steady_clock::now();
    ready_cv_.wait(lock, [&] { return ready_.count(sequence) > 0; });
    wait_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    it = ready_.find(sequence);
  }
  absl::StatusOr<Batch> batch = std::move(it->second);
  ready_.erase(it);
  ++next_consume_;
  lock.unlock();
  work_cv_.notify_all();
  return batch;
}

void DataLoader::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock,
                  [&] { return stop_ || next_claim_ < next_consume_ + options_.prefetch_batches; });
    if (stop_) return;
    const int64_t sequence = next_claim_++;
    lock.unlock();
    absl::StatusOr<Batch> batch = TorchCall(absl::StrCat("data: building batch ", sequence),
                                            [&] { return BuildBatch(sequence); });
    lock.lock();
    ready_.emplace(sequence, std::move(batch));
    ready_cv_.notify_all();
  }
}

std::shared_ptr<const std::vector<int64_t>> DataLoader::Permutation(int64_t epoch) {
  std::lock_guard<std::mutex> lock(permutation_mu_);
  auto it = permutations_.find(epoch);
  if (it != permutations_.end()) return it->second;
  auto permutation = std::make_shared<const std::vector<int64_t>>(
      EpochPermutation(dataset_->size(), options_.seed, epoch, options_.shuffle));
  permutations_.emplace(epoch, permutation);
  // Batches in flight keep their own reference, so evicting the oldest epoch is safe.
  while (permutations_.size() > kCachedPermutations) permutations_.erase(permutations_.begin());
  return permutation;
}

void DataLoader::LogOnce(int64_t index, const absl::Status& status) {
  std::lock_guard<std::mutex> lock(log_mu_);
  if (!logged_.insert(index).second) return;
  std::fprintf(stderr, "[data] skipping unreadable sample %lld of %s: %s\n",
               static_cast<long long>(index), dataset_->name().c_str(),
               std::string(status.message()).c_str());
}

absl::StatusOr<Example> DataLoader::GetOrReplace(const std::vector<int64_t>& permutation,
                                                 int64_t position, int64_t* index) {
  const int64_t n = static_cast<int64_t>(permutation.size());
  const int64_t attempts = std::min<int64_t>(options_.max_consecutive_failures + 1, n);
  absl::Status last;
  for (int64_t attempt = 0; attempt < attempts; ++attempt) {
    if (stopping_.load(std::memory_order_relaxed)) {
      return absl::CancelledError("data: loader stopping");
    }
    *index = permutation[static_cast<size_t>((position + attempt) % n)];
    absl::StatusOr<Example> example = dataset_->Get(*index);
    absl::Status status = example.ok() ? CheckImage(example->image) : example.status();
    if (status.ok()) return example;
    skipped_.fetch_add(1);
    LogOnce(*index, status);
    last = std::move(status);
  }
  return absl::DataLossError(absl::StrCat("data: ", attempts, " consecutive samples of ",
                                          dataset_->name(),
                                          " failed to decode, starting at epoch position ",
                                          position, "; last error: ", last.message()));
}

absl::StatusOr<Batch> DataLoader::BuildBatch(int64_t sequence) {
  const int64_t epoch = sequence / batches_per_epoch_;
  const int64_t batch_in_epoch = sequence % batches_per_epoch_;
  const std::shared_ptr<const std::vector<int64_t>> permutation = Permutation(epoch);
  const int64_t first = batch_in_epoch * options_.batch_size;
  const int64_t count = std::min(options_.batch_size, samples_per_rank_ - first);
  std::vector<const TransformOptions*> transforms = {&options_.transform};
  for (const TransformOptions& view : options_.independent_views) transforms.push_back(&view);

  Batch batch;
  batch.position = {epoch, batch_in_epoch};
  batch.labels = torch::empty({count}, torch::kInt64);
  batch.indices = torch::empty({count}, torch::kInt64);
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  int64_t* indices = batch.indices.data_ptr<int64_t>();
  int channels = 0;
  std::vector<float*> dst;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t position = ShardPosition(first + i, options_.rank, options_.world_size);
    int64_t index = -1;
    ASSIGN_OR_RETURN(Example example, GetOrReplace(*permutation, position, &index));
    if (i == 0) {  // The first sample fixes the batch's channel count.
      channels = options_.transform.OutputChannels(example.image.channels);
      for (const TransformOptions* transform : transforms) {
        for (int size : transform->output_sizes) {
          batch.views.push_back(torch::empty({count, channels, size, size}, torch::kFloat32));
        }
      }
    }
    std::mt19937_64 rng(SampleSeed(options_.seed, epoch, index));
    size_t view = 0;
    for (const TransformOptions* transform : transforms) {
      dst.clear();
      for (int size : transform->output_sizes) {
        dst.push_back(batch.views[view++].data_ptr<float>() +
                      i * channels * static_cast<int64_t>(size) * size);
      }
      ApplyTransformInto(example.image, *transform, rng, channels, dst);
    }
    labels[i] = example.label;
    indices[i] = index;
  }
  return batch;
}

}  // namespace peco::trainer
