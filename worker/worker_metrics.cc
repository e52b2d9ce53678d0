#include "worker/worker_metrics.h"

#include <climits>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/build_info.h"

namespace peco::worker {
namespace {

// The per-rank values, with their help text, exported as peco_worker_rank_<name>.
constexpr std::pair<const char*, const char*> kRankValues[] = {
    {"step", "Latest training step of a running rank"},
    {"loss", "Latest total loss of a running rank"},
    {"images_per_second", "Latest throughput of a running rank"},
    {"lr", "Latest learning rate of a running rank"},
    {"data_wait_share", "Share of the step spent waiting for data, latest"},
    {"codes_used", "Codebook entries used in the latest step (tokenizer)"},
    {"perplexity", "Codebook perplexity of the latest step (tokenizer)"},
    {"mlm_acc", "Masked-token accuracy of the latest step (pretrain)"},
    {"loss_pixel", "Pixel (reconstruction) loss of the latest step (tokenizer)"},
    {"loss_perceptual", "Perceptual loss of the latest step (tokenizer)"},
    {"loss_codebook", "Codebook (commitment) loss of the latest step (tokenizer)"},
    {"loss_generator", "Adversarial generator loss of the latest step (tokenizer with the GAN)"},
    {"loss_discriminator", "Discriminator loss of the latest step (tokenizer with the GAN)"},
    {"mfu", "Model FLOPs utilisation of the latest step, 0 to 1 (with train.peak_tflops)"},
    {"codebook_size", "Codebook entries of the tokenizer (tokenizer)"},
    {"checkpoint_bytes", "Size of the latest checkpoint the rank wrote"},
    {"checkpoint_seconds", "Time the rank took to serialise and write its latest checkpoint"},
};

// Values the trainer reports in percent, exported as ratios (0 to 1) as Prometheus names them:
// the trainer's name, the series' name, its help.
struct PercentValue {
  const char* name;
  const char* exported;
  const char* help;
};
constexpr PercentValue kPercentValues[] = {
    {"eval_top1", "peco_worker_rank_eval_top1_ratio",
     "Top-1 accuracy of the latest evaluation, 0 to 1 (finetune, linear_probe; k-NN for "
     "contrastive)"},
};

}  // namespace

WorkerMetrics::WorkerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("peco_build_info")
      .Help("The worker's build: version and source commit (always 1)")
      .Register(*registry_)
      .Add({{"version", kPecoVersion}, {"commit", kPecoCommit}})
      .Set(1);
  trainers_running_ = &prometheus::BuildGauge()
                           .Name("peco_worker_trainers_running")
                           .Help("Trainer ranks running on this worker")
                           .Register(*registry_)
                           .Add({});
  heartbeats_ = &prometheus::BuildCounter()
                     .Name("peco_worker_heartbeats_total")
                     .Help("Heartbeats sent to the coordinator, by result")
                     .Register(*registry_);
  reports_buffered_ = &prometheus::BuildGauge()
                           .Name("peco_worker_reports_buffered")
                           .Help("Progress reports waiting for the coordinator")
                           .Register(*registry_)
                           .Add({});
  reports_dropped_ = &prometheus::BuildCounter()
                          .Name("peco_worker_reports_dropped_total")
                          .Help("Progress reports dropped because the buffer was full")
                          .Register(*registry_)
                          .Add({});
  uploads_ = &prometheus::BuildCounter()
                  .Name("peco_worker_checkpoint_uploads_total")
                  .Help("Checkpoint upload tries, by result")
                  .Register(*registry_);
  upload_bytes_ = &prometheus::BuildCounter()
                       .Name("peco_worker_checkpoint_upload_bytes_total")
                       .Help("Bytes of committed checkpoint uploads")
                       .Register(*registry_)
                       .Add({});
  upload_seconds_ = &prometheus::BuildHistogram()
                         .Name("peco_worker_checkpoint_upload_seconds")
                         .Help("Duration of committed checkpoint uploads")
                         .Register(*registry_)
                         .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.5, 1, 2.5, 5, 10,
                                                                          30, 60, 120, 300, 600});
  exits_ = &prometheus::BuildCounter()
                .Name("peco_worker_trainer_exits_total")
                .Help("Attempts that ended on this worker, by exit cause")
                .Register(*registry_);
  for (const auto& [name, help] : kRankValues) {
    rank_families_[name] = &prometheus::BuildGauge()
                                .Name(absl::StrCat("peco_worker_rank_", name))
                                .Help(help)
                                .Register(*registry_);
  }
  for (const PercentValue& value : kPercentValues) {
    rank_families_[value.name] =
        &prometheus::BuildGauge().Name(value.exported).Help(value.help).Register(*registry_);
    percent_values_.insert(value.name);
  }
}

void WorkerMetrics::SetTrainersRunning(int64_t ranks) {
  trainers_running_->Set(static_cast<double>(ranks));
}

void WorkerMetrics::CountHeartbeat(absl::string_view result) {
  heartbeats_->Add({{"result", std::string(result)}}).Increment();
}

void WorkerMetrics::SetReportsBuffered(int64_t reports) {
  reports_buffered_->Set(static_cast<double>(reports));
}

void WorkerMetrics::SetReportsDropped(int64_t total) {
  absl::MutexLock lock(&mu_);
  if (total > dropped_seen_) {
    reports_dropped_->Increment(static_cast<double>(total - dropped_seen_));
    dropped_seen_ = total;
  }
}

void WorkerMetrics::CountUpload(absl::string_view result, int64_t bytes, absl::Duration duration) {
  uploads_->Add({{"result", std::string(result)}}).Increment();
  if (result != "committed") return;
  upload_bytes_->Increment(static_cast<double>(bytes));
  upload_seconds_->Observe(absl::ToDoubleSeconds(duration));
}

void WorkerMetrics::CountTrainerExit(absl::string_view cause) {
  exits_->Add({{"cause", std::string(cause)}}).Increment();
}

prometheus::Family<prometheus::Gauge>* WorkerMetrics::RankFamily(absl::string_view name) const {
  auto it = rank_families_.find(name);
  return it == rank_families_.end() ? nullptr : it->second;
}

void WorkerMetrics::SetRankValue(const std::string& job_id, int rank, absl::string_view name,
                                 double value) {
  prometheus::Family<prometheus::Gauge>* family = RankFamily(name);
  if (family == nullptr) return;
  absl::MutexLock lock(&mu_);
  prometheus::Gauge*& gauge = rank_gauges_[{job_id, rank, std::string(name)}];
  if (gauge == nullptr) {
    gauge = &family->Add({{"job_id", job_id}, {"rank", absl::StrCat(rank)}});
  }
  gauge->Set(percent_values_.count(name) > 0 ? value / 100.0 : value);
}

void WorkerMetrics::RemoveJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  for (auto it = rank_gauges_.lower_bound({job_id, INT_MIN, ""}); it != rank_gauges_.end();) {
    if (std::get<0>(it->first) != job_id) break;
    RankFamily(std::get<2>(it->first))->Remove(it->second);
    it = rank_gauges_.erase(it);
  }
}

}  // namespace peco::worker
