#include "trainer/data/image_folder.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "trainer/data/image_codec.h"

namespace peco::trainer {
namespace {

namespace fs = std::filesystem;

bool IsImageFile(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// The file's bytes, refused before they are read when the file holds more than `max_bytes` (a
// file that grows meanwhile is read only up to the size checked).
absl::StatusOr<std::string> ReadImageFile(const std::string& path, int64_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open", path, errno);
  struct stat st;
  absl::StatusOr<std::string> data;
  if (::fstat(fd, &st) != 0) {
    data = ErrnoStatus("cannot stat", path, errno);
  } else if (!S_ISREG(st.st_mode)) {
    data = absl::DataLossError(absl::StrCat(path, ": not a regular file"));
  } else if (st.st_size > max_bytes) {
    data = absl::DataLossError(absl::StrCat(path, ": image file of ", st.st_size,
                                            " bytes is over the limit of ", max_bytes));
  } else {
    data = ReadFileRange(fd, path, 0, st.st_size);
  }
  ::close(fd);
  return data;
}

struct Sample {
  std::string path;
  int64_t label;
};

class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(std::string root, ImageFolderOptions options, std::vector<std::string> classes,
                     std::vector<Sample> samples)
      : root_(std::move(root)),
        options_(options),
        classes_(std::move(classes)),
        samples_(std::move(samples)) {}

  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }
  int64_t num_classes() const override { return static_cast<int64_t>(classes_.size()); }
  std::string name() const override { return absl::StrCat("image-folder:", root_); }

  absl::StatusOr<Example> Get(int64_t index) const override {
    if (index < 0 || index >= size()) {
      return absl::OutOfRangeError(
          absl::StrCat(name(), ": index ", index, " out of range [0, ", size(), ")"));
    }
    const Sample& sample = samples_[static_cast<size_t>(index)];
    absl::StatusOr<std::string> data = ReadImageFile(sample.path, options_.limits.max_file_bytes);
    if (!data.ok()) return absl::DataLossError(data.status().message());
    Example example;
    ASSIGN_OR_RETURN(example.image,
                     DecodeImage(*data, options_.min_decode_side, sample.path, options_.limits));
    example.label = sample.label;
    return example;
  }

  absl::StatusOr<int64_t> Label(int64_t index) const override {
    if (index < 0 || index >= size()) {
      return absl::OutOfRangeError(
          absl::StrCat(name(), ": index ", index, " out of range [0, ", size(), ")"));
    }
    return samples_[static_cast<size_t>(index)].label;
  }

 private:
  const std::string root_;
  const ImageFolderOptions options_;
  const std::vector<std::string> classes_;
  const std::vector<Sample> samples_;
};

}  // namespace

namespace {

// Image files below `dir` (recursively, through directory links), sorted by path.
absl::StatusOr<std::vector<std::string>> ImagesBelow(const fs::path& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (fs::recursive_directory_iterator
           it(dir, fs::directory_options::follow_directory_symlink, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && IsImageFile(it->path())) {
      files.push_back(it->path().string());
    }
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("image folder ", dir.string(), ": cannot list: ", ec.message()));
  }
  std::sort(files.begin(), files.end());
  return files;
}

// A list file's lines; see image_folder.h.
absl::StatusOr<std::unique_ptr<Dataset>> OpenImageList(const std::string& list,
                                                       ImageFolderOptions options) {
  constexpr int64_t kMaxListBytes = int64_t{256} << 20;
  constexpr size_t kMaxListEntries = 20'000'000;
  constexpr int64_t kMaxLabel = 99'999;
  std::error_code ec;
  const uintmax_t bytes = fs::file_size(list, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("image list ", list, ": ", ec.message()));
  if (bytes > static_cast<uintmax_t>(kMaxListBytes)) {
    return absl::InvalidArgumentError(absl::StrCat("image list ", list, ": ", bytes,
                                                   " bytes is over the limit of ", kMaxListBytes));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(list));
  // Entries resolve (symlinks included) to files below the list's own folder, resolved too.
  const fs::path base = fs::path(list).parent_path();
  const fs::path resolved_base = fs::weakly_canonical(base.empty() ? fs::path(".") : base, ec);
  if (ec) return absl::NotFoundError(absl::StrCat("image list ", list, ": ", ec.message()));
  std::vector<Sample> samples;
  int64_t labelled = 0;
  int64_t classes = 0;
  int64_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty() || line.front() == '#') continue;
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("image list ", list, ": line ", line_number, ": ", why));
    };
    absl::string_view path = line;
    int64_t label = -1;
    if (const size_t tab = line.rfind('\t'); tab != absl::string_view::npos) {
      path = line.substr(0, tab);
      if (!absl::SimpleAtoi(line.substr(tab + 1), &label) || label < 0 || label > kMaxLabel) {
        return bad(absl::StrCat("expected <path>\\t<label> with a label in [0, ", kMaxLabel,
                                "], got '", line.substr(tab + 1), "'"));
      }
      if (options.labels == FolderLabels::kNone) label = -1;
      ++labelled;
      classes = std::max(classes, label + 1);
    }
    const fs::path relative(std::string{path});
    if (path.empty() || relative.is_absolute()) {
      return bad("expected a path relative to the list's folder");
    }
    for (const fs::path& part : relative) {
      if (part == "..") return bad("'..' would leave the list's folder");
    }
    if (samples.size() == kMaxListEntries) {
      return bad(absl::StrCat("more than ", kMaxListEntries, " images; split the list"));
    }
    std::error_code resolve_ec;
    const fs::path resolved = fs::weakly_canonical(resolved_base / relative, resolve_ec);
    const std::string prefix = resolved_base.string() + "/";
    if (resolve_ec || resolved.string().compare(0, prefix.size(), prefix) != 0) {
      return bad(
          absl::StrCat("'", path, "' resolves outside the list's folder ", resolved_base.string()));
    }
    samples.push_back({resolved.string(), label});
  }
  if (samples.empty()) {
    return absl::NotFoundError(absl::StrCat("image list ", list, ": no image paths"));
  }
  if (options.labels == FolderLabels::kNone) labelled = classes = 0;
  if (labelled != 0 && labelled != static_cast<int64_t>(samples.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("image list ", list, ": ", labelled, " of ", samples.size(),
                     " lines have a label; label every line (<path>\\t<label>) or none"));
  }
  std::vector<std::string> class_names;
  for (int64_t c = 0; c < classes; ++c) class_names.push_back(absl::StrCat(c));
  return std::unique_ptr<Dataset>(
      new ImageFolderDataset(list, options, std::move(class_names), std::move(samples)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Dataset>> OpenImageFolder(const std::string& root,
                                                         ImageFolderOptions options) {
  std::error_code ec;
  if (fs::is_regular_file(root, ec)) {
    if (options.labels == FolderLabels::kFolders) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image list ", root, ": data.labels is folders, but a list file has no class folders"));
    }
    return OpenImageList(root, options);
  }
  if (!fs::is_directory(root, ec)) {
    return absl::NotFoundError(
        absl::StrCat("image folder ", root, ": not a directory or a list file"));
  }
  std::vector<std::string> classes;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_directory(type_ec)) classes.push_back(it->path().filename().string());
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("image folder ", root, ": cannot list: ", ec.message()));
  }
  std::sort(classes.begin(), classes.end());
  if (options.labels == FolderLabels::kAuto && !classes.empty()) {
    // Images beside sub-folders: class folders would drop them, a flat read would not.
    for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (it->is_regular_file(type_ec) && IsImageFile(it->path())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "image folder ", root, ": holds images (", it->path().filename().string(),
            ") beside sub-folders; set data.labels: folders (the sub-folders are classes, these "
            "images are left out) or none (every image, unlabelled)"));
      }
    }
  }
  const bool by_folder = options.labels == FolderLabels::kFolders ||
                         (options.labels == FolderLabels::kAuto && !classes.empty());

  std::vector<Sample> samples;
  if (!by_folder) {
    ASSIGN_OR_RETURN(std::vector<std::string> files, ImagesBelow(root));
    for (std::string& file : files) samples.push_back({std::move(file), -1});
    if (samples.empty()) {
      return absl::NotFoundError(
          absl::StrCat("image folder ", root, ": no .jpg/.jpeg/.png files below it"));
    }
    return std::unique_ptr<Dataset>(new ImageFolderDataset(root, options, {}, std::move(samples)));
  }
  for (size_t label = 0; label < classes.size(); ++label) {
    ASSIGN_OR_RETURN(std::vector<std::string> files, ImagesBelow(fs::path(root) / classes[label]));
    for (std::string& file : files) {
      samples.push_back({std::move(file), static_cast<int64_t>(label)});
    }
  }
  if (samples.empty()) {
    return absl::NotFoundError(absl::StrCat("image folder ", root,
                                            ": no .jpg/.jpeg/.png files in class sub-folders (",
                                            classes.size(), " sub-folders)"));
  }
  return std::unique_ptr<Dataset>(
      new ImageFolderDataset(root, options, std::move(classes), std::move(samples)));
}

}  // namespace peco::trainer
