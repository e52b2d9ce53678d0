#include "trainer/io/torch_file.h"

#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "tests/test_util/files.h"

namespace peco::trainer {
namespace {

using ::peco::testing::ScopedTempDir;

std::string Golden(const std::string& name) {
  return absl::StrCat(PECO_REFERENCE_DIR, "/golden/", name);
}

c10::IValue MustRead(const std::string& path) {
  absl::StatusOr<c10::IValue> value = ReadTorchFile(path);
  EXPECT_TRUE(value.ok()) << value.status();
  return value.ok() ? *value : c10::IValue();
}

c10::IValue MustGet(const c10::IValue& dict, const std::string& key) {
  absl::StatusOr<c10::IValue> value = DictGet(dict, key, "test dict");
  EXPECT_TRUE(value.ok()) << value.status();
  return value.ok() ? *value : c10::IValue();
}

double Sum(const torch::Tensor& t) { return t.to(torch::kDouble).sum().item<double>(); }

// Writes a zip archive (as torch.save would) whose data.pkl is `pickle`.
std::string WriteArchive(const std::string& dir, const std::string& pickle) {
  const std::string path = absl::StrCat(dir, "/crafted.pt");
  caffe2::serialize::PyTorchStreamWriter writer(path);
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  writer.writeEndOfFile();
  return path;
}

TEST(TorchFileTest, ReadsVqganGolden) {
  const c10::IValue root = MustRead(Golden("vqgan_tiny.pt"));
  ASSERT_TRUE(root.isGenericDict());
  EXPECT_EQ(root.toGenericDict().size(), 8u);

  absl::StatusOr<NamedTensors> sd = ToNamedTensors(MustGet(root, "state_dict"), "state_dict");
  ASSERT_TRUE(sd.ok()) << sd.status();
  ASSERT_EQ(sd->size(), 183u);
  EXPECT_EQ((*sd)[0].first, "encoder.conv_in.weight");
  EXPECT_EQ((*sd)[0].second.sizes(), torch::IntArrayRef({32, 3, 3, 3}));
  EXPECT_EQ((*sd)[1].first, "encoder.conv_in.bias");
  EXPECT_EQ((*sd)[1].second.sizes(), torch::IntArrayRef({32}));
  EXPECT_EQ((*sd)[50].first, "encoder.mid.attn_1.norm.weight");
  EXPECT_EQ((*sd)[50].second.sizes(), torch::IntArrayRef({64}));
  EXPECT_EQ(sd->back().first, "post_quant_conv.bias");
  EXPECT_EQ(sd->back().second.sizes(), torch::IntArrayRef({16}));
  EXPECT_EQ((*sd)[0].second.dtype(), torch::kFloat);
  EXPECT_NEAR(Sum((*sd)[0].second), -3.3506392019917257, 1e-9);
  EXPECT_FLOAT_EQ((*sd)[0].second.flatten()[1].item<float>(), -0.0457981713116169f);

  const torch::Tensor indices = MustGet(root, "indices").toTensor();
  EXPECT_EQ(indices.sizes(), torch::IntArrayRef({2, 8, 8}));
  EXPECT_EQ(indices.dtype(), torch::kLong);
  EXPECT_EQ(indices.sum().item<int64_t>(), 4267);
  EXPECT_EQ(indices[0][0][3].item<int64_t>(), 54);

  const torch::Tensor loss = MustGet(root, "quant_loss").toTensor();
  EXPECT_EQ(loss.dim(), 0);
  EXPECT_EQ(loss.item<float>(), 0.06626643240451813f);

  EXPECT_NEAR(Sum(MustGet(root, "input").toTensor()), -66.27563941478729, 1e-6);
  EXPECT_NEAR(Sum(MustGet(root, "reconstruction").toTensor()), 146.7253130110912, 1e-6);

  const c10::IValue config = MustGet(root, "config");
  EXPECT_EQ(MustGet(config, "n_embed").toInt(), 64);
  EXPECT_DOUBLE_EQ(MustGet(config, "beta").toDouble(), 0.25);
  const c10::IValue ddconfig = MustGet(config, "ddconfig");
  EXPECT_EQ(MustGet(ddconfig, "ch").toInt(), 32);
  EXPECT_FALSE(MustGet(ddconfig, "double_z").toBool());
  EXPECT_DOUBLE_EQ(MustGet(ddconfig, "dropout").toDouble(), 0.0);
  const c10::IValue ch_mult = MustGet(ddconfig, "ch_mult");
  ASSERT_TRUE(ch_mult.isList());
  EXPECT_EQ(ch_mult.toIntVector(), std::vector<int64_t>({1, 2, 2}));
  // Key order as written by Python.
  std::vector<std::string> keys;
  for (const auto& e : ddconfig.toGenericDict()) keys.push_back(e.key().toStringRef());
  EXPECT_EQ(keys, std::vector<std::string>({"double_z", "z_channels", "resolution", "in_channels",
                                            "out_ch", "ch", "ch_mult", "num_res_blocks",
                                            "attn_resolutions", "dropout"}));

  absl::StatusOr<c10::IValue> missing = DictGet(config, "nope", "vqgan config");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("nope"), std::string::npos);
  EXPECT_NE(missing.status().message().find("vqgan config"), std::string::npos);
  EXPECT_EQ(ToNamedTensors(root, "root").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ToNamedTensors(root, "root").status().message().find("config"), std::string::npos);
}

TEST(TorchFileTest, ReadsMocoCheckpointWithIntegerKeys) {
  const c10::IValue root = MustRead(Golden("mocov3_vit_tiny_checkpoint.pth.tar"));
  EXPECT_EQ(MustGet(root, "epoch").toInt(), 300);
  EXPECT_EQ(MustGet(root, "arch").toStringRef(), "vit_tiny_test");

  absl::StatusOr<NamedTensors> sd = ToNamedTensors(MustGet(root, "state_dict"), "state_dict");
  ASSERT_TRUE(sd.ok()) << sd.status();
  ASSERT_EQ(sd->size(), 108u);
  EXPECT_EQ((*sd)[0].first, "module.base_encoder.cls_token");
  EXPECT_EQ((*sd)[0].second.sizes(), torch::IntArrayRef({1, 1, 32}));
  EXPECT_EQ((*sd)[1].first, "module.base_encoder.pos_embed");
  EXPECT_EQ((*sd)[1].second.sizes(), torch::IntArrayRef({1, 17, 32}));
  EXPECT_EQ(sd->back().first, "module.momentum_encoder.norm.bias");

  const c10::IValue optimizer = MustGet(root, "optimizer");
  const c10::impl::GenericDict state = MustGet(optimizer, "state").toGenericDict();
  ASSERT_EQ(state.size(), 51u);
  int64_t expected_key = 0;
  for (const auto& e : state) {
    ASSERT_TRUE(e.key().isInt());
    EXPECT_EQ(e.key().toInt(), expected_key++);
  }
  const c10::IValue param0 = state.at(c10::IValue(int64_t{0}));
  EXPECT_EQ(MustGet(param0, "step").toTensor().item<float>(), 1.0f);
  EXPECT_NEAR(Sum(MustGet(param0, "exp_avg").toTensor()), 3.1999977193772793, 1e-9);
  EXPECT_EQ(DictGet(MustGet(optimizer, "state"), "0", "state").status().code(),
            absl::StatusCode::kNotFound);

  const c10::IValue groups = MustGet(optimizer, "param_groups");
  ASSERT_TRUE(groups.isList());
  ASSERT_EQ(groups.toList().size(), 1u);
  const c10::IValue group = groups.toList().get(0);
  EXPECT_DOUBLE_EQ(MustGet(group, "lr").toDouble(), 0.00015);
  EXPECT_TRUE(MustGet(group, "foreach").isNone());
  const c10::IValue betas = MustGet(group, "betas");
  ASSERT_TRUE(betas.isTuple());
  EXPECT_DOUBLE_EQ(betas.toTupleRef().elements()[1].toDouble(), 0.999);
  EXPECT_EQ(MustGet(group, "params").toIntVector().size(), 53u);
}

TEST(TorchFileTest, ReadsTensorListsAndBoolTensors) {
  const c10::IValue moco = MustRead(Golden("mocov3_vit_tiny.pt"));
  const c10::IValue outputs = MustGet(moco, "block_outputs");
  ASSERT_TRUE(outputs.isTensorList());
  const std::vector<torch::Tensor> blocks = outputs.toTensorVector();
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].sizes(), torch::IntArrayRef({2, 17, 32}));
  EXPECT_NEAR(Sum(blocks[0]), 549.6119721201248, 1e-5);
  EXPECT_NEAR(Sum(blocks[1]), 550.846930895932, 1e-5);
  EXPECT_DOUBLE_EQ(MustGet(MustGet(moco, "config"), "ln_eps").toDouble(), 1e-6);

  const c10::IValue beit = MustRead(Golden("beit_mim_tiny.pt"));
  const torch::Tensor mask = MustGet(beit, "bool_masked_pos").toTensor();
  EXPECT_EQ(mask.dtype(), torch::kBool);
  EXPECT_EQ(mask.sizes(), torch::IntArrayRef({2, 16}));
  EXPECT_EQ(mask.sum().item<int64_t>(), 11);
  EXPECT_EQ(MustGet(beit, "logits_masked").toTensor().sizes(), torch::IntArrayRef({11, 64}));
  EXPECT_TRUE(MustGet(MustGet(beit, "config"), "qkv_bias").toBool());
  absl::StatusOr<NamedTensors> sd = ToNamedTensors(MustGet(beit, "state_dict"), "state_dict");
  ASSERT_TRUE(sd.ok()) << sd.status();
  EXPECT_EQ(sd->size(), 40u);
}

TEST(TorchFileTest, RefusesMissingTruncatedAndNonZipFiles) {
  ScopedTempDir temp("torch_file_test");
  const std::string dir = temp.path();
  EXPECT_EQ(ReadTorchFile(dir + "/absent.pt").status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<std::string> bytes = ReadFileToString(Golden("vqgan_tiny.pt"));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const std::string truncated = dir + "/truncated.pt";
  ASSERT_TRUE(
      WriteFileSynced(truncated, absl::string_view(*bytes).substr(0, bytes->size() / 2)).ok());
  EXPECT_FALSE(ReadTorchFile(truncated).ok());
  const std::string truncated_tail = dir + "/truncated_tail.pt";
  ASSERT_TRUE(
      WriteFileSynced(truncated_tail, absl::string_view(*bytes).substr(0, bytes->size() - 10))
          .ok());
  EXPECT_FALSE(ReadTorchFile(truncated_tail).ok());

  const std::string not_zip = dir + "/not_zip.pt";
  ASSERT_TRUE(WriteFileSynced(not_zip, "this is not a zip file at all\n").ok());
  absl::StatusOr<c10::IValue> result = ReadTorchFile(not_zip);
  EXPECT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find(not_zip), std::string::npos) << result.status();
}

TEST(TorchFileTest, RefusesUnsupportedGlobal) {
  ScopedTempDir temp("torch_file_test");
  const std::string dir = temp.path();
  // protocol 2; GLOBAL os.system; BINUNICODE "echo"; TUPLE1; REDUCE; STOP
  std::string pickle =
      "\x80\x02"
      "cos\nsystem\n"
      "X";
  pickle += std::string("\x04\x00\x00\x00", 4) +
            "echo"
            "\x85"
            "R"
            ".";
  absl::StatusOr<c10::IValue> result = ReadTorchFile(WriteArchive(dir, pickle));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("os.system"), std::string::npos) << result.status();
}

TEST(TorchFileTest, RefusesMalformedPickles) {
  ScopedTempDir temp("torch_file_test");
  const std::string dir = temp.path();
  // No STOP.
  EXPECT_FALSE(ReadTorchFile(WriteArchive(dir, std::string("\x80\x02}q\x00", 5))).ok());
  // Unknown opcode.
  absl::StatusOr<c10::IValue> bad = ReadTorchFile(WriteArchive(dir, "\x80\x02\xff."));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("0xff"), std::string::npos) << bad.status();
  // Persistent id naming a storage record that does not exist.
  std::string pid =
      "\x80\x02"
      "ctorch._utils\n_rebuild_tensor_v2\n"
      "(("  // MARK for the argument tuple, MARK for the persistent id tuple.
      "X";
  pid += std::string("\x07\x00\x00\x00", 4) + "storage" + "ctorch\nFloatStorage\n" + "X" +
         std::string("\x01\x00\x00\x00", 4) + "0" + "X" + std::string("\x03\x00\x00\x00", 4) +
         "cpu" + "K\x04" + "t" + "Q" + std::string("K\x00", 2) + "K\x04\x85" + "K\x01\x85" +
         "\x89" + "}" + "t" + "R" + ".";
  absl::StatusOr<c10::IValue> missing = ReadTorchFile(WriteArchive(dir, pid));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("data/0"), std::string::npos) << missing.status();
}

// A chain of nested tuples far deeper than the reader accepts: refused, and the interpreter's
// objects are torn down without recursing once per level (which would overflow the stack).
TEST(TorchFileTest, RefusesDeepNestingWithoutOverflowingTheStack) {
  ScopedTempDir temp("torch_file_test");
  std::string pickle = "\x80\x02N";       // protocol 2; None
  pickle += std::string(200000, '\x85');  // TUPLE1, 200,000 times: ((((None,),),),...)
  pickle += ".";
  absl::StatusOr<c10::IValue> result = ReadTorchFile(WriteArchive(temp.path(), pickle));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("nested deeper than"), std::string::npos)
      << result.status();
}

// Thirty levels of lists, each holding ten memo references to the level below: 10^30 values if
// every reference were converted on its own. Converted once per object, the file reads at once
// and the references share their value, as they share the object in Python.
TEST(TorchFileTest, MemoReferencesShareOneValueInsteadOfExpanding) {
  ScopedTempDir temp("torch_file_test");
  std::string pickle = "\x80\x02Nq";
  pickle += '\x00';  // BINPUT 0: None
  for (int level = 1; level <= 30; ++level) {
    pickle += "](";  // EMPTY_LIST, MARK
    for (int k = 0; k < 10; ++k) {
      pickle += 'h';  // BINGET level - 1
      pickle += static_cast<char>(level - 1);
    }
    pickle += 'e';  // APPENDS
    pickle += 'q';  // BINPUT level
    pickle += static_cast<char>(level);
  }
  pickle += ".";
  absl::StatusOr<c10::IValue> result = ReadTorchFile(WriteArchive(temp.path(), pickle));
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_TRUE(result->isList());
  const c10::List<c10::IValue> top = result->toList();
  ASSERT_EQ(top.size(), 10u);
  const c10::IValue first = top.get(0);
  const c10::IValue second = top.get(1);
  ASSERT_TRUE(first.isList());
  EXPECT_TRUE(first.is(second));
  EXPECT_EQ(first.toList().size(), 10u);
}

// A list that contains itself (EMPTY_LIST, DUP, APPEND) is refused as a cycle.
TEST(TorchFileTest, RefusesAContainerThatContainsItself) {
  ScopedTempDir temp("torch_file_test");
  absl::StatusOr<c10::IValue> result = ReadTorchFile(WriteArchive(temp.path(), "\x80\x02]2a."));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("cycle"), std::string::npos) << result.status();
}

c10::IValue MakeNestedDict() {
  c10::Dict<std::string, torch::Tensor> inner;
  inner.insert("weight", torch::arange(12, torch::kFloat).reshape({3, 4}));
  inner.insert("bias", torch::tensor({1.5, -2.5}, torch::kDouble));
  c10::impl::GenericDict root(c10::StringType::get(), c10::AnyType::get());
  root.insert("step", torch::tensor(int64_t{7}));
  root.insert("mask", torch::tensor({true, false, true}));
  root.insert("model", c10::impl::toGenericDict(inner));
  return root;
}

TEST(TorchFileTest, RoundTrip) {
  ScopedTempDir temp("torch_file_test");
  const std::string dir = temp.path();
  const std::string path = dir + "/round_trip.pt";
  const c10::IValue original = MakeNestedDict();
  ASSERT_TRUE(WriteTorchFile(path, original).ok());
  const c10::IValue loaded = MustRead(path);
  ASSERT_TRUE(loaded.isGenericDict());
  std::vector<std::string> keys;
  for (const auto& e : loaded.toGenericDict()) keys.push_back(e.key().toStringRef());
  EXPECT_EQ(keys, std::vector<std::string>({"step", "mask", "model"}));
  EXPECT_TRUE(torch::equal(MustGet(loaded, "step").toTensor(), torch::tensor(int64_t{7})));
  EXPECT_TRUE(torch::equal(MustGet(loaded, "mask").toTensor(), torch::tensor({true, false, true})));
  absl::StatusOr<NamedTensors> model = ToNamedTensors(MustGet(loaded, "model"), "model");
  ASSERT_TRUE(model.ok()) << model.status();
  ASSERT_EQ(model->size(), 2u);
  EXPECT_EQ((*model)[0].first, "weight");
  EXPECT_TRUE(torch::equal((*model)[0].second, torch::arange(12, torch::kFloat).reshape({3, 4})));
  EXPECT_EQ((*model)[1].first, "bias");
  EXPECT_TRUE(torch::equal((*model)[1].second, torch::tensor({1.5, -2.5}, torch::kDouble)));

  EXPECT_EQ(WriteTorchFile(dir + "/bad.pt", c10::IValue(int64_t{3})).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TorchFileTest, PythonLoadsWrittenFile) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 has no torch";
  }
  ScopedTempDir temp("torch_file_test");
  const std::string dir = temp.path();
  const std::string path = dir + "/for_python.pt";
  ASSERT_TRUE(WriteTorchFile(path, MakeNestedDict()).ok());
  const std::string script = absl::StrCat(
      "import torch; d = torch.load('", path, "'); ",
      "assert list(d) == ['step', 'mask', 'model'], list(d); ",
      "assert list(d['model']) == ['weight', 'bias'], list(d['model']); ",
      "assert torch.equal(d['model']['weight'], torch.arange(12.).reshape(3, 4)); ",
      "assert d['model']['bias'].dtype == torch.float64; ",
      "assert d['mask'].tolist() == [True, False, True]; ", "assert int(d['step']) == 7");
  const std::string command = absl::StrCat("/usr/bin/python3 -c \"", script, "\"");
  EXPECT_EQ(std::system(command.c_str()), 0) << command;
}

}  // namespace
}  // namespace peco::trainer
