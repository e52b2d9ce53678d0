#include "coordinator/listen_address.h"

#include "absl/strings/match.h"

namespace peco::coordinator {

bool IsLoopbackListenAddress(absl::string_view listen) {
  if (absl::StartsWith(listen, "unix:") || absl::StartsWith(listen, "unix-abstract:")) {
    return true;
  }
  const size_t colon = listen.rfind(':');
  const absl::string_view host =
      colon == absl::string_view::npos ? listen : listen.substr(0, colon);
  return absl::StartsWith(host, "127.") || host == "localhost" || host == "[::1]";
}

}  // namespace peco::coordinator
