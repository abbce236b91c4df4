#!/bin/sh
echo "report $*"
