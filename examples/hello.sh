#!/bin/sh
# A first Sky Port job: reads an input file, writes an output file.
#SWM name hello
#SWM input-files data.txt
#SWM output-files result.txt
#SWM duration 00:05:00
echo "Hello from Sky Port, job $SWM_JOB_ID on $(hostname)"
wc -w < data.txt > result.txt
echo "data.txt has $(cat result.txt) words"
