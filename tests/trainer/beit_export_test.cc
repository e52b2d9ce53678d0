// Export of BEiT models as `{'model': state_dict}` PyTorch files: Python's torch.load (Debian
// python3-torch) reads them with the official keys, shapes, order and values, and peco reads
// them back.
#include "trainer/export/beit_export.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/test_util/files.h"
#include "trainer/io/torch_file.h"
#include "trainer/models/beit_config.h"
#include "trainer/models/beit_vit.h"
#include "trainer/models/beit_weights.h"
#include "trainer/models/weights.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;

const std::string kSpec = std::string(PECO_REFERENCE_DIR) + "/spec/keys/";

// A directory kept after the test: the Python checks' failure messages point at the log in it.
// Tests that leave nothing to inspect use ScopedTempDir.
std::string MakeTempDir() {
  std::string pattern = absl::StrCat(::testing::TempDir(), "/beit_export_test_XXXXXX");
  EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
  return pattern;
}

bool HavePythonTorch() {
  return fs::exists("/usr/bin/python3") &&
         std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

// Runs `script` with /usr/bin/python3 and `args`; returns its exit status (output in `log`).
int RunPython(const std::string& dir, const std::string& script, const std::string& args,
              const std::string& log) {
  std::ofstream(dir + "/check.py") << script;
  const std::string command =
      absl::StrCat("/usr/bin/python3 ", dir, "/check.py ", args, " > ", log, " 2>&1");
  return std::system(command.c_str());
}

// Python: the file's 'model' dict has exactly the spec's `name [shape]` lines, in order, and
// every relative_position_index is int64.
constexpr char kSpecCheck[] =
    "import sys, torch\n"
    "d = torch.load(sys.argv[1])\n"
    "assert list(d.keys()) == ['model'], list(d.keys())\n"
    "sd = d['model']\n"
    "got = [f'{k} {list(v.shape)}' for k, v in sd.items()]\n"
    "want = [l.strip() for l in open(sys.argv[2]) if l.strip()]\n"
    "assert got == want, (set(got) ^ set(want)) or 'order differs'\n"
    "for k, v in sd.items():\n"
    "    want_dtype = torch.int64 if k.endswith('relative_position_index') else torch.float32\n"
    "    assert v.dtype == want_dtype, (k, v.dtype)\n"
    "print('ok', len(got), sum(v.numel() for v in sd.values()))\n";

TEST(BeitExportTest, BasePretrainExportLoadsInPythonWithTheOfficialKeys) {
  if (!HavePythonTorch()) GTEST_SKIP() << "needs Debian's python3-torch";
  const std::string dir = MakeTempDir();
  {
    BeitMim model(BeitBasePatch16Config());
    ASSERT_TRUE(ExportBeitPretrain(model, dir + "/pretrain.pt").ok());
  }
  EXPECT_EQ(RunPython(dir, kSpecCheck,
                      absl::StrCat(dir, "/pretrain.pt ", kSpec,
                                   "beit_base_patch16_224_8k_vocab_pretrain.txt"),
                      dir + "/python.log"),
            0)
      << "see " << dir << "/python.log";
  fs::remove(dir + "/pretrain.pt");
}

TEST(BeitExportTest, BaseFinetuneExportLoadsInPythonWithTheOfficialKeys) {
  if (!HavePythonTorch()) GTEST_SKIP() << "needs Debian's python3-torch";
  const std::string dir = MakeTempDir();
  {
    BeitClassifier model(FinetuneConfigFrom(BeitBasePatch16Config(), 1000));
    ASSERT_TRUE(ExportBeitFinetune(model, dir + "/finetune.pt").ok());
  }
  EXPECT_EQ(
      RunPython(dir, kSpecCheck,
                absl::StrCat(dir, "/finetune.pt ", kSpec, "beit_base_patch16_224_finetune.txt"),
                dir + "/python.log"),
      0)
      << "see " << dir << "/python.log";
  fs::remove(dir + "/finetune.pt");
}

BeitVitConfig TinyConfig() {
  BeitVitConfig c;
  c.img_size = 16;
  c.patch_size = 4;
  c.vocab_size = 24;
  c.embed_dim = 32;
  c.depth = 2;
  c.num_heads = 2;
  return c;
}

TEST(BeitExportTest, ExportedValuesAndIndexesAreWhatPythonReads) {
  if (!HavePythonTorch()) GTEST_SKIP() << "needs Debian's python3-torch";
  torch::manual_seed(1);
  BeitMim model(TinyConfig());
  {
    torch::NoGradGuard no_grad;
    model->named_parameters()["rel_pos_bias.relative_position_bias_table"].normal_();
  }
  const std::string dir = MakeTempDir();
  ASSERT_TRUE(ExportBeitPretrain(model, dir + "/tiny.pt").ok());
  std::ofstream expected(dir + "/expected.txt");
  for (const auto& [name, tensor] : StateDictInOfficialOrder(*model)) {
    expected << name << " " << tensor.to(torch::kFloat64).sum().item<double>() << " "
             << tensor.numel() << "\n";
  }
  expected.close();
  // Python recomputes the relative position index with the official construction too.
  const std::string script =
      "import sys, torch\n"
      "sd = torch.load(sys.argv[1])['model']\n"
      "want = [l.split() for l in open(sys.argv[2])]\n"
      "assert list(sd.keys()) == [w[0] for w in want], 'key order differs'\n"
      "for name, total, numel in want:\n"
      "    t = sd[name]\n"
      "    assert t.numel() == int(numel), name\n"
      "    assert abs(t.double().sum().item() - float(total)) <= 1e-6 * max(1.0, "
      "abs(float(total))), name\n"
      "wh = ww = 4\n"
      "coords = torch.stack(torch.meshgrid([torch.arange(wh), torch.arange(ww)], "
      "indexing='ij')).flatten(1)\n"
      "rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()\n"
      "rel[:, :, 0] += wh - 1\n"
      "rel[:, :, 1] += ww - 1\n"
      "rel[:, :, 0] *= 2 * ww - 1\n"
      "n = (2 * wh - 1) * (2 * ww - 1) + 3\n"
      "idx = torch.zeros((wh * ww + 1,) * 2, dtype=torch.long)\n"
      "idx[1:, 1:] = rel.sum(-1)\n"
      "idx[0, 0:] = n - 3\n"
      "idx[0:, 0] = n - 2\n"
      "idx[0, 0] = n - 1\n"
      "assert torch.equal(sd['rel_pos_bias.relative_position_index'], idx)\n"
      "print('ok', len(sd))\n";
  EXPECT_EQ(RunPython(dir, script, absl::StrCat(dir, "/tiny.pt ", dir, "/expected.txt"),
                      dir + "/python.log"),
            0)
      << "see " << dir << "/python.log";
}

TEST(BeitExportTest, PecoReadsItsExportBackIntoAnIdenticalModel) {
  torch::manual_seed(2);
  BeitMim model(TinyConfig());
  model->eval();
  ::peco::testing::ScopedTempDir temp("beit_export_test");
  const std::string dir = temp.path();
  ASSERT_TRUE(ExportBeitPretrain(model, dir + "/tiny.pt").ok());
  auto state = ReadBeitStateFile(dir + "/tiny.pt");
  ASSERT_TRUE(state.ok()) << state.status();
  torch::manual_seed(3);
  BeitMim copy(TinyConfig());
  copy->eval();
  ASSERT_TRUE(LoadNamedTensors(*copy, *state, "tiny.pt", /*strict=*/true).ok());
  torch::NoGradGuard no_grad;
  torch::Tensor images = torch::randn({2, 3, 16, 16});
  torch::Tensor mask = torch::rand({2, 16}) < 0.5;
  EXPECT_TRUE(torch::equal(model->forward(images, mask), copy->forward(images, mask)));

  // The export also seeds a classifier (the fine-tuning path).
  BeitClassifier classifier(FinetuneConfigFrom(TinyConfig(), 3));
  EXPECT_TRUE(LoadPretrainIntoClassifier(classifier, *state, "tiny.pt").ok());
}

TEST(BeitExportTest, UnwritablePathIsAnErrorNotACrash) {
  BeitMim model(TinyConfig());
  absl::Status status = ExportBeitPretrain(model, "/nonexistent-peco-dir/sub/x.pt");
  EXPECT_FALSE(status.ok());
  auto missing = ReadBeitStateFile("/nonexistent-peco-dir/x.pt");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  // A file in another layout (a tokenizer export's 'state_dict') is refused naming the key.
  ::peco::testing::ScopedTempDir temp("beit_export_test");
  const std::string dir = temp.path();
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert(c10::IValue(std::string("state_dict")), c10::IValue(torch::zeros({1})));
  ASSERT_TRUE(WriteTorchFile(dir + "/other.pt", c10::IValue(root)).ok());
  auto other = ReadBeitStateFile(dir + "/other.pt");
  ASSERT_FALSE(other.ok());
  EXPECT_THAT(std::string(other.status().message()), ::testing::HasSubstr("'model'"));
}

}  // namespace
}  // namespace peco::trainer
