"""flowplan's wire contract: the protobuf package `flowplan` (see proto/flowplan/v1/)."""
