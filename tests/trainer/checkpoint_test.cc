#include "trainer/engine/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "tests/test_util/files.h"
#include "trainer/engine/module_state.h"
#include "trainer/io/torch_file.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;
using ::peco::testing::ScopedTempDir;
using ::testing::HasSubstr;

CheckpointFiles SampleFiles(int variant = 0) {
  std::string binary;
  for (int i = 0; i < 300; ++i) binary.push_back(static_cast<char>((i * 7 + variant) % 256));
  return {{"model.pt", binary},
          {"optimizer.pt", absl::StrCat("optimizer state ", variant)},
          {"state.json", absl::StrCat("{\"step\":", variant, "}")},
          {"notes..txt", "names may contain dots"}};
}

std::string MustWrite(const std::string& root, int64_t step, const CheckpointFiles& files) {
  absl::StatusOr<std::string> dir = WriteCheckpoint(root, step, files);
  EXPECT_TRUE(dir.ok()) << dir.status();
  return dir.ok() ? *dir : "";
}

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

void Rewrite(const std::string& path, const std::string& data) {
  ASSERT_TRUE(WriteFileSynced(path, data).ok());
}

std::string Read(const std::string& path) {
  absl::StatusOr<std::string> data = ReadFileToString(path);
  EXPECT_TRUE(data.ok()) << data.status();
  return data.ok() ? *data : "";
}

TEST(CheckpointTest, WriteThenReadRoundTrips) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.Join("ckpts");  // created on demand
  const CheckpointFiles files = SampleFiles(3);
  const std::string dir = MustWrite(root, 42, files);
  EXPECT_EQ(fs::path(dir).filename(), "step-000000000042");
  EXPECT_EQ(CheckpointStep(dir), 42);
  absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, files);
  EXPECT_TRUE(VerifyCheckpoint(dir).ok());
  // Exactly the files plus MANIFEST; no temporary directories left in the root.
  std::vector<std::string> expected = {"MANIFEST", "model.pt", "notes..txt", "optimizer.pt",
                                       "state.json"};
  EXPECT_EQ(Names(dir), expected);
  EXPECT_EQ(Names(root), std::vector<std::string>{"step-000000000042"});
}

TEST(CheckpointTest, EmptyFileRoundTrips) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  const CheckpointFiles files = {{"empty", ""}, {"x", "y"}};
  absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(MustWrite(root, 1, files));
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, files);
}

TEST(CheckpointTest, FlippingAnyByteOfAnyDataFileIsDataLossNamingIt) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  const std::string dir = MustWrite(root, 7, SampleFiles());
  for (const auto& [name, data] : SampleFiles()) {
    const std::string path = (fs::path(dir) / name).string();
    // First, middle and last byte of each file.
    for (size_t pos : {size_t{0}, data.size() / 2, data.size() - 1}) {
      std::string damaged = data;
      damaged[pos] = static_cast<char>(damaged[pos] ^ 0x01);
      Rewrite(path, damaged);
      absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(dir);
      EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << name << " byte " << pos;
      EXPECT_THAT(read.status().message(), HasSubstr(path));
      EXPECT_FALSE(VerifyCheckpoint(dir).ok()) << name << " byte " << pos;
      Rewrite(path, data);
    }
    ASSERT_TRUE(ReadCheckpoint(dir).ok()) << "restoring " << name;
  }
}

TEST(CheckpointTest, FlippingAnyByteOfManifestIsDetected) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  const std::string dir = MustWrite(root, 7, SampleFiles());
  const std::string manifest_path = (fs::path(dir) / kManifestFileName).string();
  const std::string manifest = Read(manifest_path);
  ASSERT_FALSE(manifest.empty());
  for (size_t pos = 0; pos < manifest.size(); ++pos) {
    for (unsigned char mask : {0x01, 0x80}) {
      std::string damaged = manifest;
      damaged[pos] = static_cast<char>(damaged[pos] ^ mask);
      Rewrite(manifest_path, damaged);
      absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(dir);
      ASSERT_FALSE(read.ok()) << "byte " << pos << " mask " << int{mask};
      EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss)
          << "byte " << pos << ": " << read.status();
      EXPECT_THAT(read.status().message(), HasSubstr("MANIFEST")) << "byte " << pos;
      EXPECT_THAT(read.status().message(), HasSubstr(dir)) << "byte " << pos;
      EXPECT_FALSE(VerifyCheckpoint(dir).ok()) << "byte " << pos;
    }
  }
  Rewrite(manifest_path, manifest);
  EXPECT_TRUE(ReadCheckpoint(dir).ok());
}

TEST(CheckpointTest, ManifestDamageCases) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  const std::string dir = MustWrite(root, 7, SampleFiles());
  const std::string manifest_path = (fs::path(dir) / kManifestFileName).string();
  const std::string manifest = Read(manifest_path);

  struct Case {
    std::string label;
    std::string text;
  };
  const size_t first_newline = manifest.find('\n');
  const std::vector<Case> cases = {
      {"empty", ""},
      {"first line only", manifest.substr(0, first_newline + 1)},
      {"last line dropped", manifest.substr(0, manifest.rfind('\n', manifest.size() - 2) + 1)},
      {"cut mid-line", manifest.substr(0, manifest.size() / 2)},
      {"garbage", "this is not a manifest\n"},
      {"path traversal", absl::StrCat(std::string(64, 'a'), " 3 ../x\n")},
      {"negative size", absl::StrCat(std::string(64, 'a'), " -3 model.pt\n")},
  };
  for (const Case& c : cases) {
    Rewrite(manifest_path, c.text);
    absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(dir);
    EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss)
        << c.label << ": " << read.status();
    EXPECT_THAT(read.status().message(), HasSubstr("MANIFEST")) << c.label;
  }
  ASSERT_TRUE(fs::remove(manifest_path));
  absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(dir);
  EXPECT_FALSE(read.ok());
  EXPECT_THAT(read.status().message(), HasSubstr(manifest_path));
}

TEST(CheckpointTest, TruncationAndDeletionAreDetected) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  const std::string dir = MustWrite(root, 1, SampleFiles());
  const std::string path = (fs::path(dir) / "model.pt").string();
  const std::string data = Read(path);
  for (size_t keep : {size_t{0}, size_t{1}, data.size() - 1}) {
    Rewrite(path, data.substr(0, keep));
    absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(dir);
    EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << "kept " << keep;
    EXPECT_THAT(read.status().message(), HasSubstr(path));
  }
  // Appending is damage too.
  Rewrite(path, data + "x");
  EXPECT_EQ(ReadCheckpoint(dir).status().code(), absl::StatusCode::kDataLoss);
  // A listed file that is gone.
  ASSERT_TRUE(fs::remove(path));
  absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(dir);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << read.status();
  EXPECT_THAT(read.status().message(), HasSubstr(path));
}

TEST(CheckpointTest, RestoreLatestFallsBackPastDamagedNewest) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  MustWrite(root, 100, SampleFiles(1));
  const std::string middle = MustWrite(root, 200, SampleFiles(2));
  const std::string newest = MustWrite(root, 300, SampleFiles(3));

  absl::StatusOr<RestoredCheckpoint> restored = RestoreLatest(root);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->dir, newest);
  EXPECT_EQ(restored->files, SampleFiles(3));
  EXPECT_TRUE(restored->skipped.empty());

  const std::string damaged_path = (fs::path(newest) / "state.json").string();
  Rewrite(damaged_path, "{\"step\":9}");
  restored = RestoreLatest(root);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->dir, middle);
  EXPECT_EQ(restored->files, SampleFiles(2));
  ASSERT_EQ(restored->skipped.size(), 1u);
  EXPECT_THAT(restored->skipped[0], HasSubstr(damaged_path));
}

TEST(CheckpointTest, RestoreLatestWithNothingVerifiedIsNotFound) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  EXPECT_EQ(RestoreLatest(root).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RestoreLatest(root + "/missing").status().code(), absl::StatusCode::kNotFound);
  const std::string only = MustWrite(root, 5, SampleFiles());
  ASSERT_TRUE(fs::remove(fs::path(only) / "optimizer.pt"));
  absl::StatusOr<RestoredCheckpoint> restored = RestoreLatest(root);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(restored.status().message(), HasSubstr("optimizer.pt"));
}

TEST(CheckpointTest, ListCheckpointsSortsByStepAndIgnoresOthers) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  const std::string s10 = MustWrite(root, 10, SampleFiles());
  const std::string s9 = MustWrite(root, 9, SampleFiles());
  const std::string s1000 = MustWrite(root, 1000, SampleFiles());
  fs::create_directories(fs::path(root) / ".tmp-step-000000002000-123");
  fs::create_directories(fs::path(root) / ".old-step-000000000010-123");
  fs::create_directories(fs::path(root) / "step-notanumber");
  fs::create_directories(fs::path(root) / "other");
  Rewrite((fs::path(root) / "step-000000005000").string(), "a file, not a directory");
  EXPECT_EQ(ListCheckpoints(root), (std::vector<std::string>{s9, s10, s1000}));
  EXPECT_TRUE(ListCheckpoints(root + "/missing").empty());
  absl::StatusOr<RestoredCheckpoint> restored = RestoreLatest(root);
  ASSERT_TRUE(restored.ok());
  EXPECT_EQ(restored->dir, s1000);
}

TEST(CheckpointTest, CheckpointStepParsesNames) {
  EXPECT_EQ(CheckpointStep("/a/b/step-000000000123"), 123);
  EXPECT_EQ(CheckpointStep("step-0"), 0);
  EXPECT_EQ(CheckpointStep("/a/.tmp-step-000000000123-5"), -1);
  EXPECT_EQ(CheckpointStep("/a/step-12x"), -1);
  EXPECT_EQ(CheckpointStep("/a/other"), -1);
}

TEST(CheckpointTest, ApplyRetentionKeepsNewestAndKeepDirAndIsIdempotent) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  std::vector<std::string> dirs;
  for (int64_t step : {1, 2, 3, 4, 5, 6}) dirs.push_back(MustWrite(root, step, SampleFiles()));
  ASSERT_TRUE(ApplyRetention(root, 2, dirs[0]).ok());
  const std::vector<std::string> expected = {dirs[0], dirs[4], dirs[5]};
  EXPECT_EQ(ListCheckpoints(root), expected);
  ASSERT_TRUE(ApplyRetention(root, 2, dirs[0]).ok());
  EXPECT_EQ(ListCheckpoints(root), expected);
  for (const std::string& dir : expected) EXPECT_TRUE(ReadCheckpoint(dir).ok()) << dir;

  ASSERT_TRUE(ApplyRetention(root, 2).ok());
  EXPECT_EQ(ListCheckpoints(root), (std::vector<std::string>{dirs[4], dirs[5]}));
  // keep_last below 1 still keeps the newest.
  ASSERT_TRUE(ApplyRetention(root, 0).ok());
  EXPECT_EQ(ListCheckpoints(root), (std::vector<std::string>{dirs[5]}));
  EXPECT_TRUE(ApplyRetention(root + "/missing", 3).ok());
}

TEST(CheckpointTest, RewritingSameStepReplacesIt) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  const std::string first = MustWrite(root, 50, SampleFiles(1));
  const CheckpointFiles second_files = {{"only.bin", "new content"}};
  const std::string second = MustWrite(root, 50, second_files);
  EXPECT_EQ(first, second);
  absl::StatusOr<CheckpointFiles> read = ReadCheckpoint(second);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(*read, second_files);
  EXPECT_EQ(Names(second), (std::vector<std::string>{"MANIFEST", "only.bin"}));
  EXPECT_EQ(Names(root), std::vector<std::string>{"step-000000000050"});
}

TEST(CheckpointTest, InvalidFileNamesAreRefusedWithoutLeftovers) {
  ScopedTempDir temp("checkpoint_test");
  const std::string root = temp.path();
  // The contract's one file-name rule (common/checkpoint_manifest.h): a name the worker, the
  // coordinator or the CLI would refuse is refused when the checkpoint is written.
  for (const std::string& bad :
       {std::string("a/b"), std::string(""), std::string("MANIFEST"), std::string(".."),
        std::string("/abs"), std::string("with space.txt"), std::string(".hidden")}) {
    CheckpointFiles files = SampleFiles();
    files[bad] = "x";
    absl::StatusOr<std::string> dir = WriteCheckpoint(root, 3, files);
    EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
    EXPECT_THAT(dir.status().message(), HasSubstr(absl::StrCat("'", bad, "'")));
  }
  EXPECT_TRUE(ListCheckpoints(root).empty());
  EXPECT_TRUE(Names(root).empty()) << "a refused write left files behind";
}

// The tensor files of a checkpoint (model, optimizer, RNG) round-trip exactly, and are read
// through the hardened interpreter: a file of another shape, with a missing or an extra tensor,
// or in LibTorch's TorchScript archive format (which runs a TorchScript loader) is refused naming
// the file and the tensor, and changes nothing.
TEST(ModuleStateTest, TensorFilesRoundTripAndAnythingElseIsRefusedChangingNothing) {
  torch::manual_seed(3);
  torch::nn::Sequential model(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3));
  torch::optim::AdamW optimizer(model->parameters(), torch::optim::AdamWOptions(1e-2));
  for (int step = 0; step < 3; ++step) {
    optimizer.zero_grad();
    model->forward(torch::randn({5, 4})).square().sum().backward();
    optimizer.step();
  }
  absl::StatusOr<std::string> model_bytes = SerializeModule(*model);
  absl::StatusOr<std::string> optimizer_bytes = SerializeOptimizer(optimizer);
  ASSERT_TRUE(model_bytes.ok() && optimizer_bytes.ok());
  // A module state file is a state_dict: names, values and buffers (BatchNorm's statistics).
  absl::StatusOr<NamedTensors> named = DecodeTensorDict(*model_bytes, "model.pt");
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_EQ(named->size(), 7u);  // weight, bias; weight, bias, running_mean, running_var, count

  torch::nn::Sequential copy(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3));
  torch::optim::AdamW copy_optimizer(copy->parameters(), torch::optim::AdamWOptions(1.0));
  ASSERT_TRUE(DeserializeModule(*model_bytes, *copy).ok());
  ASSERT_TRUE(DeserializeOptimizer(*optimizer_bytes, copy_optimizer).ok());
  for (const auto& item : model->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), copy->named_parameters()[item.key()])) << item.key();
  }
  EXPECT_DOUBLE_EQ(
      static_cast<torch::optim::AdamWOptions&>(copy_optimizer.param_groups()[0].options()).lr(),
      1e-2);
  // One more identical step on both: the moments and step counts came back exactly.
  torch::manual_seed(9);
  const torch::Tensor x = torch::randn({5, 4});
  for (auto* pair : {&optimizer, &copy_optimizer}) pair->zero_grad();
  model->forward(x).square().sum().backward();
  copy->forward(x).square().sum().backward();
  optimizer.step();
  copy_optimizer.step();
  for (const auto& item : model->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), copy->named_parameters()[item.key()])) << item.key();
  }

  // Another shape: refused naming the tensor, nothing copied.
  torch::nn::Sequential wider(torch::nn::Linear(4, 5), torch::nn::BatchNorm1d(5));
  const torch::Tensor before = wider->named_parameters()["0.weight"].clone();
  absl::Status shape = DeserializeModule(*model_bytes, *wider, "ck/model.pt");
  EXPECT_EQ(shape.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(shape.message(), ::testing::HasSubstr("ck/model.pt: '0.weight' is [3, 4]"));
  EXPECT_TRUE(torch::equal(wider->named_parameters()["0.weight"], before));
  // Missing and extra tensors.
  torch::nn::Sequential deeper(torch::nn::Linear(4, 3), torch::nn::BatchNorm1d(3),
                               torch::nn::Linear(3, 2));
  EXPECT_THAT(DeserializeModule(*model_bytes, *deeper).message(),
              ::testing::HasSubstr("no tensor '2.weight'"));
  torch::nn::Sequential shallower(torch::nn::Linear(4, 3));
  EXPECT_THAT(DeserializeModule(*model_bytes, *shallower).message(),
              ::testing::HasSubstr("unexpected tensors 1.bias"));
  // LibTorch's own archive format is not read: it would go through the TorchScript loader.
  torch::serialize::OutputArchive archive;
  model->save(archive);
  std::ostringstream legacy;
  archive.save_to(legacy);
  absl::Status refused = DeserializeModule(legacy.str(), *copy, "old/model.pt");
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.message(), ::testing::HasSubstr("old/model.pt"));
  // Bytes that are no file at all.
  EXPECT_FALSE(DeserializeOptimizer("not a zip", copy_optimizer).ok());
}

}  // namespace
}  // namespace peco::trainer
