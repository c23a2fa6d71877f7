// Static registration for full TensorRT's `trtexec --staticPlugins`: the creator registers itself
// when the library is loaded. Built only into libearlytom_plugins_static.so, never into the
// dynamic library: TensorRT-RTX 1.7's registry has another method table than TensorRT 10's
// header describes, and this registration crashes there.
#include "token_select_plugin.h"

namespace earlytom
{
REGISTER_TENSORRT_PLUGIN(TokenSelectCreator);
} // namespace earlytom
