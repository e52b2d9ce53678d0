// Multi-job and multi-rank work through the service on loopback: a data-parallel job gang-placed
// on two CPU slots (and restarted as a whole when one of its ranks dies), and the PeCo pipeline
// contrastive -> tokenizer -> pretrain -> linear_probe, where each job reads its dependency's
// final checkpoint.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <png.h>
#include <signal.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/e2e/cluster.h"

namespace peco::e2e {
namespace {

using ::testing::HasSubstr;
using ::testing::SizeIs;

std::string ReadProcFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The pid of the trainer process of `job_id` that runs global rank `rank`, or 0.
pid_t FindTrainerRank(const std::string& job_id, int rank) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = ReadProcFile(entry.path() / "cmdline");
    if (cmdline.find("peco-train") == std::string::npos ||
        cmdline.find(job_id) == std::string::npos) {
      continue;
    }
    for (absl::string_view variable :
         absl::StrSplit(ReadProcFile(entry.path() / "environ"), '\0')) {
      if (variable == absl::StrCat("RANK=", rank)) return static_cast<pid_t>(std::stoi(name));
    }
  }
  return 0;
}

// The value of numeric field `name` in the last metric point of `events` that has it.
std::optional<double> LastValue(const std::vector<v1::WatchJobEvent>& events,
                                const std::string& name) {
  std::optional<double> value;
  for (const v1::WatchJobEvent& event : events) {
    if (!event.has_metric_point()) continue;
    auto it = event.metric_point().values().find(name);
    if (it != event.metric_point().values().end()) value = it->second;
  }
  return value;
}

struct DecodedPng {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // row-major, 3 bytes per pixel

  // Standard deviation of the rgb values: 0 for a blank picture.
  double Spread() const {
    double sum = 0, square = 0;
    for (uint8_t v : rgb) sum += v, square += double{v} * v;
    const double n = static_cast<double>(rgb.size());
    return std::sqrt(std::max(0.0, square / n - (sum / n) * (sum / n)));
  }
};

// Decodes a PNG file with libpng; nullopt when it is not one.
std::optional<DecodedPng> ReadPng(const std::string& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) return std::nullopt;
  image.format = PNG_FORMAT_RGB;
  DecodedPng png;
  png.width = static_cast<int>(image.width);
  png.height = static_cast<int>(image.height);
  png.rgb.resize(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, png.rgb.data(), 0, nullptr)) {
    png_image_free(&image);
    return std::nullopt;
  }
  return png;
}

class PipelineE2eTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) cluster_.DumpLogs();
  }

  // Submits `spec` with the CLI (extra arguments appended); returns the job id.
  std::string Submit(const std::string& spec, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"submit", spec, "-o", "name"};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult submit = cluster_.Peco(args);
    EXPECT_EQ(submit.exit_code, 0) << submit.output << submit.error;
    return std::string(absl::StripAsciiWhitespace(submit.output));
  }

  Cluster cluster_;
};

TEST_F(PipelineE2eTest, TwoRankJobRunsOnTwoSlotsAndRestartsAsAWholeWhenARankDies) {
  cluster_.StartCoordinator();
  cluster_.StartWorker(/*cpu_slots=*/2);
  ASSERT_TRUE(cluster_.WaitForWorkers(1));

  // A gang larger than the cluster is refused at submit, not queued forever.
  CommandResult refused = cluster_.Peco(
      {"submit", cluster_.WriteSpec("e2e-too-wide", 10, 5), "--set", "job.world_size=3"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.error, HasSubstr("spec.world_size"));

  const std::string job_id =
      Submit(cluster_.WriteSpec("e2e-ddp", /*max_steps=*/40, /*checkpoint_every=*/10),
             {"--set", "job.world_size=2"});
  ASSERT_FALSE(job_id.empty());
  absl::StatusOr<v1::GetJobResponse> running = cluster_.WaitForJob(
      job_id,
      [&](const v1::GetJobResponse&) {
        absl::StatusOr<std::vector<v1::CheckpointInfo>> infos = cluster_.Checkpoints(job_id);
        return infos.ok() && !infos->empty();
      },
      absl::Seconds(180));
  ASSERT_TRUE(running.ok()) << running.status();
  ASSERT_THAT(running->attempts(0).placements(), SizeIs(1));
  EXPECT_THAT(running->attempts(0).placements(0).ranks(), SizeIs(2));

  // Rank 1 dies: the whole gang restarts from the last checkpoint.
  const pid_t rank1 = FindTrainerRank(job_id, 1);
  ASSERT_GT(rank1, 0) << "no trainer process for rank 1";
  ASSERT_EQ(::kill(rank1, SIGKILL), 0);

  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(300));
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_GE(done->attempts_size(), 2);
  const v1::Attempt& last = done->attempts(done->attempts_size() - 1);
  EXPECT_GT(last.resume_step(), 0) << "resumed from a checkpoint, not from scratch";
  EXPECT_THAT(last.placements(0).ranks(), SizeIs(2));

  // Both ranks reported steps, and they trained one model: every step's loss is the mean over
  // the two ranks' batches, so both report the same value (two independent copies would not).
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok()) << history.status();
  std::map<std::pair<int64_t, int64_t>, std::map<int, double>> losses;  // (attempt, step) -> rank
  for (const v1::WatchJobEvent& event : *history) {
    if (!event.has_metric_point()) continue;
    const v1::MetricPoint& point = event.metric_point();
    auto loss = point.values().find("loss");
    if (loss != point.values().end()) {
      losses[{point.attempt(), point.step()}][point.rank()] = loss->second;
    }
  }
  int compared = 0;
  for (const auto& [key, by_rank] : losses) {
    if (by_rank.size() != 2) continue;
    EXPECT_NEAR(by_rank.at(0), by_rank.at(1), 1e-6)
        << "attempt " << key.first << " step " << key.second;
    ++compared;
  }
  EXPECT_GT(compared, 10) << "rank 1 reported too few steps";
  // One checkpoint series, written by rank 0: rank 1 names no checkpoint when it completes.
  absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster_.Checkpoints(job_id);
  ASSERT_TRUE(checkpoints.ok()) << checkpoints.status();
  std::set<int64_t> steps;
  for (const v1::CheckpointInfo& info : *checkpoints) {
    EXPECT_TRUE(steps.insert(info.step()).second) << "two checkpoints of step " << info.step();
  }
  CommandResult rank1_log =
      cluster_.Peco({"logs", job_id, "--rank", "1", "--attempt", std::to_string(last.number())});
  EXPECT_THAT(rank1_log.output, HasSubstr("rank 1 of 2"));
  EXPECT_THAT(rank1_log.output, HasSubstr("completed at step 40; checkpoint: \n"));
}

// Two workers that other ranks reach at two addresses (127.0.0.2 and 127.0.0.3, both this
// machine's loopback), one CPU slot each: a two-rank gang spans both, rank 1 rendezvouses at
// rank 0's worker's host, each rank's Gloo device listens on its own worker's host, and the
// ranks train one model.
TEST_F(PipelineE2eTest, AGangAcrossTwoWorkersRendezvousesAtRankZerosHost) {
  cluster_.StartCoordinator();
  cluster_.StartWorker(/*cpu_slots=*/1, {"--host", "127.0.0.2"});
  cluster_.StartWorker(/*cpu_slots=*/1, {"--host", "127.0.0.3"});
  ASSERT_TRUE(cluster_.WaitForWorkers(2));
  const std::string job_id =
      Submit(cluster_.WriteSpec("e2e-two-hosts", /*max_steps=*/20, /*checkpoint_every=*/10),
             {"--set", "job.world_size=2"});
  ASSERT_FALSE(job_id.empty());
  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(job_id, v1::JOB_STATE_SUCCEEDED, absl::Seconds(240));
  ASSERT_TRUE(done.ok()) << done.status();
  const v1::Attempt& attempt = done->attempts(0);
  ASSERT_THAT(attempt.placements(), SizeIs(2));
  std::map<std::string, std::string> host_of;  // worker id -> its --host
  CommandResult workers = cluster_.Peco({"-o", "json", "workers"});
  ASSERT_EQ(workers.exit_code, 0) << workers.error;
  for (const YAML::Node& worker : YAML::Load(workers.output)["workers"]) {
    host_of[worker["id"].as<std::string>()] = worker["host"].as<std::string>();
  }
  std::string rank0_worker;
  std::set<std::string> hosts;
  for (const v1::RankPlacement& placement : attempt.placements()) {
    hosts.insert(host_of[placement.worker_id()]);
    for (int rank : placement.ranks()) {
      if (rank == 0) rank0_worker = placement.worker_id();
    }
  }
  EXPECT_EQ(hosts, (std::set<std::string>{"127.0.0.2", "127.0.0.3"}));
  EXPECT_EQ(attempt.master_addr(), host_of[rank0_worker]);

  // One model: every step's loss is the mean over both ranks' batches.
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(job_id);
  ASSERT_TRUE(history.ok()) << history.status();
  std::map<int64_t, std::map<int, double>> losses;
  for (const v1::WatchJobEvent& event : *history) {
    if (!event.has_metric_point()) continue;
    auto loss = event.metric_point().values().find("loss");
    if (loss != event.metric_point().values().end()) {
      losses[event.metric_point().step()][event.metric_point().rank()] = loss->second;
    }
  }
  int compared = 0;
  for (const auto& [step, by_rank] : losses) {
    if (by_rank.size() != 2) continue;
    EXPECT_NEAR(by_rank.at(0), by_rank.at(1), 1e-6) << "step " << step;
    ++compared;
  }
  EXPECT_GT(compared, 1);
}

// A tiny MoCo v3 spec whose ViT (16 px, patch 4, 2 blocks) the tiny tokenizer of
// Cluster::WriteSpec takes as its perceptual network (blocks [1, 2]); its k-NN monitor reads 200
// training images against 200 test images at the end.
std::string ContrastiveSpec(int max_steps) {
  return absl::StrCat(R"(kind: contrastive
seed: 5
threads: 1
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 16, num_workers: 1, prefetch: 2}
model: {preset: vit_small_fashion_mnist, img_size: 16, patch_size: 4, embed_dim: 16, depth: 2,
        num_heads: 2, dim: 16, mlp_dim: 32}
optim: {warmup_steps: 2}
eval: {train_images: 200, max_images: 200, batch_size: 100}
train: {max_steps: )",
                      max_steps, R"(, log_every: 1, checkpoint_every: 10, keep_checkpoints: 2}
job: {name: e2e-contrastive, max_restarts: 2}
)");
}

// The id of the final checkpoint among `job`'s, or "".
std::string FinalCheckpoint(Cluster& cluster, const std::string& job) {
  absl::StatusOr<std::vector<v1::CheckpointInfo>> checkpoints = cluster.Checkpoints(job);
  if (!checkpoints.ok()) return "";
  for (const v1::CheckpointInfo& info : *checkpoints) {
    if (info.final()) return info.id();
  }
  return "";
}

// A tiny pretrain spec whose ViT (16 px, patch 2: an 8x8 grid, 32 codes) matches the tiny
// tokenizer of Cluster::WriteSpec (16 px, factor 2, 32 codes). tokenizer.checkpoint is left to
// the service.
std::string PretrainSpec(int max_steps) {
  return absl::StrCat(R"(kind: pretrain
seed: 5
threads: 1
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       batch_size: 8, num_workers: 1, prefetch: 2}
model: {preset: beit_small_fashion_mnist, img_size: 16, patch_size: 2, embed_dim: 32, depth: 2,
        num_heads: 2, vocab_size: 32}
masking: {num_masking_patches: 26, min_num_patches: 4}
optim: {lr: 2.0e-3, min_lr: 1.0e-4, warmup_steps: 2}
train: {max_steps: )",
                      max_steps, R"(, log_every: 1, checkpoint_every: 10, keep_checkpoints: 2}
job: {name: e2e-pretrain, max_restarts: 2}
)");
}

// Tiny readouts of the pretrain job's backbone (its architecture comes from the backbone
// checkpoint the service fills in): 50 training images per class, 500 test images.
std::string LinearProbeSpec() {
  return R"(kind: linear_probe
seed: 5
threads: 1
data: {source: fashion_mnist, path: /usr/share/datasets/fashion-mnist, image_size: 16,
       labels_per_class: 50}
readout: {block: 2, validation_images: 100}
eval: {split: test, max_images: 500, batch_size: 250}
job: {name: e2e-probe, max_restarts: 2}
)";
}

TEST_F(PipelineE2eTest, PretrainRunsOnADvaeTokenizer) {
  cluster_.StartCoordinator();
  cluster_.StartWorker(/*cpu_slots=*/1);
  ASSERT_TRUE(cluster_.WaitForWorkers(1));
  // The tiny tokenizer with the Gumbel-softmax quantizer, chosen at submit time.
  const std::string tokenizer =
      Submit(cluster_.WriteSpec("e2e-dvae", 12, 12),
             {"--set", "model.quantizer=gumbel", "--set", "model.gumbel.temperature_steps=12",
              "--set", "model.gumbel.kl_warmup_steps=4"});
  ASSERT_FALSE(tokenizer.empty());
  const std::string pretrain_spec = cluster_.root() + "/pretrain.yaml";
  std::ofstream(pretrain_spec) << PretrainSpec(6);
  const std::string pretrain = Submit(pretrain_spec, {"--after", tokenizer});
  ASSERT_FALSE(pretrain.empty());
  absl::StatusOr<v1::GetJobResponse> done =
      cluster_.WaitForState(pretrain, v1::JOB_STATE_SUCCEEDED, absl::Seconds(300));
  ASSERT_TRUE(done.ok()) << done.status();
  absl::StatusOr<std::vector<v1::WatchJobEvent>> tokenizer_history = cluster_.History(tokenizer);
  ASSERT_TRUE(tokenizer_history.ok());
  EXPECT_TRUE(LastValue(*tokenizer_history, "temperature").has_value())
      << "the tokenizer ran with the gumbel quantizer";
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(pretrain);
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_TRUE(LastValue(*history, "mlm_acc").has_value());
}

TEST_F(PipelineE2eTest, PecoPipelineHandsEachJobItsDependencysFinalCheckpoint) {
  cluster_.StartCoordinator();
  cluster_.StartWorker(/*cpu_slots=*/1);
  ASSERT_TRUE(cluster_.WaitForWorkers(1));

  const std::string contrastive_spec = cluster_.root() + "/contrastive.yaml";
  std::ofstream(contrastive_spec) << ContrastiveSpec(10);
  const std::string contrastive = Submit(contrastive_spec);
  ASSERT_FALSE(contrastive.empty());
  const std::string tokenizer =
      Submit(cluster_.WriteSpec("e2e-tokenizer", 20, 10), {"--after", contrastive});
  ASSERT_FALSE(tokenizer.empty());
  const std::string pretrain_spec = cluster_.root() + "/pretrain.yaml";
  std::ofstream(pretrain_spec) << PretrainSpec(20);
  const std::string pretrain = Submit(pretrain_spec, {"--after", tokenizer});
  ASSERT_FALSE(pretrain.empty());
  const std::string probe_spec = cluster_.root() + "/probe.yaml";
  std::ofstream(probe_spec) << LinearProbeSpec();
  const std::string probe = Submit(probe_spec, {"--after", pretrain});
  ASSERT_FALSE(probe.empty());

  absl::StatusOr<v1::GetJobResponse> probed =
      cluster_.WaitForState(probe, v1::JOB_STATE_SUCCEEDED, absl::Seconds(400));
  ASSERT_TRUE(probed.ok()) << probed.status();
  absl::StatusOr<v1::GetJobResponse> done = cluster_.GetJob(pretrain);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->job().state(), v1::JOB_STATE_SUCCEEDED);

  // The tokenizer's perceptual network was the contrastive job's final checkpoint, whose k-NN
  // monitor is in its history.
  absl::StatusOr<v1::GetJobResponse> tokenized = cluster_.GetJob(tokenizer);
  ASSERT_TRUE(tokenized.ok()) << tokenized.status();
  const std::string final_contrastive = FinalCheckpoint(cluster_, contrastive);
  ASSERT_FALSE(final_contrastive.empty());
  ASSERT_THAT(tokenized->attempts(0).inputs(), SizeIs(1));
  EXPECT_EQ(tokenized->attempts(0).inputs(0).checkpoint_id(), final_contrastive);
  EXPECT_EQ(tokenized->attempts(0).inputs(0).config_field(), "loss.perceptual.checkpoint");
  absl::StatusOr<std::vector<v1::WatchJobEvent>> contrastive_history =
      cluster_.History(contrastive);
  ASSERT_TRUE(contrastive_history.ok()) << contrastive_history.status();
  std::optional<double> contrastive_knn = LastValue(*contrastive_history, "eval_knn_top1");
  ASSERT_TRUE(contrastive_knn.has_value()) << "the k-NN monitor in the contrastive job's curve";
  EXPECT_GT(*contrastive_knn, 10.0);
  CommandResult tokenizer_log = cluster_.Peco({"logs", tokenizer});
  EXPECT_THAT(tokenizer_log.output, HasSubstr("contrastive checkpoint"));

  // The pretrain job read the tokenizer's final checkpoint.
  const std::string final_tokenizer = FinalCheckpoint(cluster_, tokenizer);
  ASSERT_FALSE(final_tokenizer.empty());
  ASSERT_THAT(done->attempts(0).inputs(), SizeIs(1));
  EXPECT_EQ(done->attempts(0).inputs(0).checkpoint_id(), final_tokenizer);
  EXPECT_EQ(done->attempts(0).inputs(0).config_field(), "tokenizer.checkpoint");
  absl::StatusOr<std::vector<v1::WatchJobEvent>> history = cluster_.History(pretrain);
  ASSERT_TRUE(history.ok()) << history.status();
  EXPECT_TRUE(LastValue(*history, "mlm_acc").has_value());

  // The probe read the pretrain job's final checkpoint and reports top-1 on the test split, in
  // its curve and as the job's latest evaluation.
  const std::string final_pretrain = FinalCheckpoint(cluster_, pretrain);
  ASSERT_THAT(probed->attempts(0).inputs(), SizeIs(1));
  EXPECT_EQ(probed->attempts(0).inputs(0).checkpoint_id(), final_pretrain);
  EXPECT_EQ(probed->attempts(0).inputs(0).config_field(), "backbone.checkpoint");
  absl::StatusOr<std::vector<v1::WatchJobEvent>> probe_history = cluster_.History(probe);
  ASSERT_TRUE(probe_history.ok()) << probe_history.status();
  std::optional<double> top1 = LastValue(*probe_history, "eval_top1");
  ASSERT_TRUE(top1.has_value()) << "an eval point in the probe's curve";
  EXPECT_GT(*top1, 10.0) << "better than chance on 10 classes";
  EXPECT_LE(*top1, 100.0);
  ASSERT_EQ(probed->job().progress().eval().count("eval_top1"), 1u);
  EXPECT_DOUBLE_EQ(probed->job().progress().eval().at("eval_top1"), *top1);
  // Every readout of the one eval event is kept: the k-NN beside the linear one.
  std::optional<double> knn = LastValue(*probe_history, "eval_knn_top1");
  ASSERT_TRUE(knn.has_value());
  EXPECT_GT(*knn, 10.0);
  ASSERT_EQ(probed->job().progress().eval().count("eval_knn_top1"), 1u);
  CommandResult get = cluster_.Peco({"get", probe});
  EXPECT_THAT(get.output, HasSubstr("eval top-1"));
  EXPECT_THAT(get.output, HasSubstr("k-NN top-1"));
  EXPECT_THAT(get.output, HasSubstr("backbone.checkpoint <- " + final_pretrain));
  CommandResult get_pretrain = cluster_.Peco({"get", pretrain});
  EXPECT_THAT(get_pretrain.output,
              HasSubstr(absl::StrCat(
                  contrastive, " contrastive SUCCEEDED -> ", tokenizer, " tokenizer SUCCEEDED -> [",
                  pretrain, " pretrain SUCCEEDED] -> ", probe, " linear_probe SUCCEEDED")));
  EXPECT_THAT(get_pretrain.output, HasSubstr("Pipeline:"));
  EXPECT_THAT(get_pretrain.output, HasSubstr("Checkpoints:"));

  // Previews through the CLI: the tokenizer's inputs over reconstructions (2 rows), the pretrain
  // job's masked inputs, target and predicted tokens decoded (3 rows), 8 images each, tiles of
  // the preset's 16 pixels enlarged to 64; nothing for the probe, with the reason.
  const std::vector<std::pair<std::string, int>> previews = {{tokenizer, 2}, {pretrain, 3}};
  for (const auto& [job, rows] : previews) {
    const std::string file = cluster_.root() + "/" + job + ".png";
    CommandResult preview = cluster_.Peco({"preview", job, "-o", file});
    ASSERT_EQ(preview.exit_code, 0) << preview.output << preview.error;
    EXPECT_THAT(preview.output, HasSubstr("wrote " + file));
    std::optional<DecodedPng> png = ReadPng(file);
    ASSERT_TRUE(png.has_value()) << file << " is not a PNG";
    constexpr int kTile = 64, kGap = 2;
    EXPECT_EQ(png->width, kGap + 8 * (kTile + kGap)) << job;
    EXPECT_EQ(png->height, kGap + rows * (kTile + kGap)) << job;
    EXPECT_GT(png->Spread(), 20.0) << job << "'s preview is blank";
  }
  CommandResult no_preview = cluster_.Peco({"preview", probe, "-o", cluster_.root() + "/p.png"});
  EXPECT_EQ(no_preview.exit_code, 1);
  EXPECT_THAT(no_preview.error, HasSubstr("holds preview.png: only tokenizer and pretrain jobs"));
  EXPECT_FALSE(std::filesystem::exists(cluster_.root() + "/p.png"));
}

}  // namespace
}  // namespace peco::e2e
