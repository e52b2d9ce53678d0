// Which checkpoint `peco preview` fetches, and the checks on what arrives (cli/preview.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/preview.h"
#include "common/sha256.h"

namespace peco::cli {
namespace {

using ::testing::HasSubstr;

v1::CheckpointInfo Checkpoint(const std::string& id, int64_t step, bool preview,
                              const std::string& png = "") {
  v1::CheckpointInfo info;
  info.set_id(id);
  info.set_job_id("job-000001");
  info.set_step(step);
  v1::ManifestEntry* model = info.add_manifest();
  model->set_name("model.pt");
  if (preview) {
    v1::ManifestEntry* entry = info.add_manifest();
    entry->set_name(kPreviewFileName);
    entry->set_size(static_cast<int64_t>(png.size()));
    entry->set_sha256(Sha256Hex(png));
  }
  return info;
}

TEST(PreviewChoiceTest, NewestCheckpointWithAPreviewUnlessOneIsNamed) {
  const std::vector<v1::CheckpointInfo> checkpoints = {
      Checkpoint("c100", 100, true), Checkpoint("c200", 200, true), Checkpoint("c300", 300, false)};
  absl::StatusOr<v1::CheckpointInfo> chosen =
      ChoosePreviewCheckpoint("job-000001", checkpoints, "");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->id(), "c200");
  chosen = ChoosePreviewCheckpoint("job-000001", checkpoints, "c100");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->id(), "c100");
}

TEST(PreviewChoiceTest, ErrorsSayWhatToDo) {
  absl::Status none = ChoosePreviewCheckpoint("job-000001", {}, "").status();
  EXPECT_EQ(none.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.message(), HasSubstr("no checkpoints yet"));
  EXPECT_THAT(none.message(), HasSubstr("try again after the first one"));

  const std::vector<v1::CheckpointInfo> checkpoints = {Checkpoint("c100", 100, false),
                                                       Checkpoint("c200", 200, false)};
  absl::Status without = ChoosePreviewCheckpoint("job-000001", checkpoints, "").status();
  EXPECT_EQ(without.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(without.message(), HasSubstr("none of the 2 checkpoints of job-000001"));
  EXPECT_THAT(without.message(), HasSubstr("train.preview_images"));

  absl::Status named = ChoosePreviewCheckpoint("job-000001", checkpoints, "c100").status();
  EXPECT_THAT(named.message(), HasSubstr("--checkpoint: c100 of job-000001 holds no preview.png"));

  absl::Status foreign = ChoosePreviewCheckpoint("job-000001", checkpoints, "c999").status();
  EXPECT_EQ(foreign.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(foreign.message(), HasSubstr("c999 is not a checkpoint of job-000001"));
  EXPECT_THAT(foreign.message(), HasSubstr("c100, c200"));
}

TEST(PreviewChoiceTest, ReceivedBytesMustMatchTheManifestAndBeAPng) {
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "rest of the picture";
  const v1::CheckpointInfo info = Checkpoint("c100", 100, true, png);
  EXPECT_TRUE(VerifyPreview(info, png).ok());
  EXPECT_EQ(VerifyPreview(info, png.substr(0, 10)).code(), absl::StatusCode::kDataLoss);
  std::string flipped = png;
  flipped.back() ^= 1;
  absl::Status changed = VerifyPreview(info, flipped);
  EXPECT_EQ(changed.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(changed.message(), HasSubstr("SHA-256"));
  const std::string text = "not a png but the right length!";
  EXPECT_THAT(VerifyPreview(Checkpoint("c1", 1, true, text), text).message(),
              HasSubstr("not a PNG"));
  EXPECT_EQ(VerifyPreview(Checkpoint("c1", 1, false), png).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace peco::cli
