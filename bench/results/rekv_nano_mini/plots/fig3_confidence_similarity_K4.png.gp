set terminal pngcairo size 1000,600 noenhanced
set output 'bench/results/rekv_nano_mini/plots/fig3_confidence_similarity_K4.png'
set title 'draft confidence vs similarity: draft pythia-nano vs target pythia-mini, K=4, 734 rejections (NO-GO)'
set grid
set key below
set xlabel 'draft probability of the rejected token'
set ylabel 'cosine, draft vs target (mean over layers)'
set xrange [0:1]
set yrange [-1:1]
plot 'bench/results/rekv_nano_mini/plots/fig3_confidence_similarity_K4.png.dat' index 0 using 1:2 with points pt 7 ps 0.5 lc rgb '#9ecae1' title 'K, per event', \
     '' index 0 using 1:3 with points pt 7 ps 0.5 lc rgb '#fcbba1' title 'V, per event', \
     '' index 1 using 1:2 with linespoints lw 2 pt 7 lc rgb '#2171b5' title 'K, bin mean', \
     '' index 1 using 1:3 with linespoints lw 2 pt 5 lc rgb '#cb181d' title 'V, bin mean', \
     0.7 with lines dt 3 lc rgb '#238b45' title 'GO above 0.7', \
     0.5 with lines dt 3 lc rgb '#cb181d' title 'NO-GO below 0.5'
