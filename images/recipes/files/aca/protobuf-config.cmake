# distrilab: Debian's libprotobuf-dev (3.21) installs no CMake package configuration, but ACA's
# CMakeLists ask for `find_package(Protobuf CONFIG REQUIRED)`. This file answers that request with
# CMake's own FindProtobuf module, which defines the same imported targets (protobuf::libprotobuf,
# protobuf::protoc) and the PROTOBUF_LIBRARY variable ACA links with.
if(NOT TARGET protobuf::libprotobuf)
  find_package(Protobuf MODULE REQUIRED)
endif()
set(protobuf_VERSION "${Protobuf_VERSION}")
set(protobuf_FOUND TRUE)
