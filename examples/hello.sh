#!/bin/sh
# A first Sky Port job. Submit it from the repository's root with its input:
#   swm submit --wait examples/hello.sh --input examples/data.txt
# Inputs keep their path relative to where swm runs, so the job finds examples/data.txt in its directory.
# (Naming it in the script instead works too: #SWM input-files examples/data.txt)
#SWM name hello
#SWM output-files result.txt
#SWM duration 00:05:00
echo "Hello from Sky Port: job $SWM_JOB_ID on $(hostname)"
wc -w < examples/data.txt > result.txt
echo "examples/data.txt has $(cat result.txt) words"
